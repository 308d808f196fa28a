"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, then stop.

SLURM and container runtimes send SIGTERM before they kill; an interactive user presses Ctrl-C.
Outside training both stop at once (SIGTERM as :class:`~flops_fit.errors.Terminated`, which the
command line turns into exit 143). Inside :func:`deferred`, the first signal is only recorded:
the training loop finishes its optimizer step, writes a checkpoint and raises. A second signal
stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flops_fit.errors import Terminated


class StopRequest:
    """Which signal asked the loop to stop (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def raise_now(self) -> None:
        """Raise what the signal means: KeyboardInterrupt, or Terminated for SIGTERM."""
        raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt


def on_sigterm(signum: int, frame: object) -> None:
    """The process-wide SIGTERM handler: stop like Ctrl-C."""
    raise Terminated


@contextmanager
def deferred() -> Iterator[StopRequest]:
    """Record SIGINT/SIGTERM instead of raising, so the caller can stop at a step boundary.

    Only the main thread can own signal handlers; elsewhere this changes nothing.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def record(signum: int, frame: object) -> None:
        if stop.signum is not None:  # a second signal: stop now
            stop.signum = signum
            stop.raise_now()
        stop.signum = signum

    previous = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
