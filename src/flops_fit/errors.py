"""User-facing errors: one sentence that names what is wrong and how to fix it.

The command line catches :class:`FlopsFitError`, prints its message on one line and exits with
``exit_code`` (no traceback unless ``HYDRA_FULL_ERROR=1``). Python callers get the exception.
"""

from __future__ import annotations


class FlopsFitError(Exception):
    """Bad input or an impossible request; the message is shown to the user as is."""

    exit_code: int = 2


class NotEnoughDataError(FlopsFitError):
    """Too few usable runs to fit yet (a sweep still running). Cron can tell it apart by exit 3."""

    exit_code = 3


class UnusableFitError(FlopsFitError):
    """A fit whose predictions cannot be true (less than one parameter or token, no loss)."""

    exit_code = 5


class TrainingFailedError(FlopsFitError):
    """No run of a train call completed: every run it tried failed."""

    exit_code = 4


class EnvironmentFailure(FlopsFitError):
    """The machine, not the input: a write or read failed (disk full ENOSPC, permission
    EACCES/EPERM, read-only file system EROFS). Exit 6, so cron and schedulers can retry
    elsewhere instead of fixing the command."""

    exit_code = 6


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop like Ctrl-C (checkpoint, say how to resume), exit 143."""
