"""A Ctrl-C that cannot be lost.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. When that is a
finaliser or a weakref callback (common while torch frees tensors), the interpreter prints
"Exception ignored" and carries on, so a long compile would finish and write its output as
if nothing happened. While :func:`catching_interrupts` is active, SIGINT also sets a flag
that long loops and the final rename of an output directory check with
:func:`raise_if_interrupted`, so an interrupt that was swallowed still stops the run.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

_interrupted = False
_signal = signal.SIGINT  # the signal behind the last interruption


class Interrupted(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` that knows its signal, so a SIGTERM ends with the exit status a shell
    expects of one (128 + 15), not Ctrl-C's 130."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.signum = int(signum)


def exit_status(exc: BaseException) -> int:
    """The shell's exit status for an interruption: 128 + its signal (SIGINT when unknown)."""
    return 128 + getattr(exc, "signum", int(signal.SIGINT))


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _interrupted, _signal
    _interrupted, _signal = True, signum
    raise Interrupted(signum)


@contextlib.contextmanager
def catching_interrupts() -> Iterator[None]:
    """Remember every SIGINT (or SIGTERM) received inside the block (the main thread only can install it)."""
    global _interrupted, _signal
    _interrupted, _signal = False, signal.SIGINT
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    # a SIGTERM (kill, a job scheduler's time limit) would end the process without unwinding, leaving a
    # staged output directory behind: it stops the run as a Ctrl-C does
    previous_term = signal.getsignal(signal.SIGTERM)
    if previous_term is not signal.SIG_IGN:  # an ignored SIGTERM stays ignored
        signal.signal(signal.SIGTERM, _on_sigint)
    previous_hook = sys.unraisablehook

    def quiet_interrupts(unraisable: Any) -> None:  # the flag carries it: no "Exception ignored" traceback
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    sys.unraisablehook = quiet_interrupts
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if previous_term is not None:  # None: installed outside Python, cannot be put back
            signal.signal(signal.SIGTERM, previous_term)
        sys.unraisablehook = previous_hook
        _interrupted, _signal = False, signal.SIGINT  # a later run in this process starts clean


@contextlib.contextmanager
def deferring_interrupts() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it: torch.export and the ONNX exporter run
    Python inside C++ callbacks, and a ``KeyboardInterrupt`` raised there can crash the process
    (a probe saw a segfault) instead of unwinding to the clean-up that removes a staged output.
    A second Ctrl-C raises at once (the user insists); an ignored SIGINT stays ignored."""
    global _interrupted
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None or previous is signal.SIG_IGN:
        yield
        return
    held = 0

    def hold(signum: int, frame: FrameType | None) -> None:
        global _interrupted, _signal
        nonlocal held
        held += 1
        _interrupted, _signal = True, signum
        if held > 1:
            raise Interrupted(signum)

    hold.holds_interrupts = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, hold)
    held_term = signal.getsignal(signal.SIGTERM)  # a SIGTERM unwinds as a Ctrl-C does (catching_interrupts)
    if held_term is _on_sigint:
        signal.signal(signal.SIGTERM, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held_term is _on_sigint:
            signal.signal(signal.SIGTERM, held_term)
        # outside catching_interrupts (or an outer hold) nothing else reads the flag
        if held and previous is not _on_sigint and not getattr(previous, "holds_interrupts", False):
            _interrupted = False
    if held:
        raise Interrupted(_signal)


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` again if one arrived and was swallowed somewhere."""
    if _interrupted:
        raise Interrupted(_signal)


__all__ = ["Interrupted", "catching_interrupts", "deferring_interrupts", "exit_status", "raise_if_interrupted"]
