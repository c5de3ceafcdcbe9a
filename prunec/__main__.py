"""``python -m prunec`` is the ``prunec`` command."""

import sys

try:  # importing torch takes seconds: a Ctrl-C then is still an interrupt, not a traceback
    from prunec.cli import main
except KeyboardInterrupt:
    print("prunec: interrupted; no output was written or replaced", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
