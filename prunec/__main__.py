"""``python -m prunec`` is the ``prunec`` command."""

import sys

from prunec.cli import main

sys.exit(main())
