"""Errors that calikd raises for bad input.

Every error carries a message that names the problem and, where possible, a ``hint`` that says what to do.
The CLI prints ``error: <message>`` (and ``hint: <hint>``) and exits with :attr:`CalikdError.exit_code`.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable


class CalikdError(Exception):
    """Base class of every error caused by the user's input or environment (not a bug in calikd)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class ConfigError(CalikdError, ValueError):
    """An unknown key, an out-of-range number or an inconsistent combination of options."""


class DataError(CalikdError):
    """A dataset is missing, truncated, malformed or inconsistent."""


class ChecksumError(DataError):
    """A downloaded or cached file does not match its expected SHA-256."""


class UnsafeArchiveError(DataError):
    """An archive member would escape the target folder, or is a link or a device."""


class CheckpointError(CalikdError):
    """A checkpoint is missing, unsafe (pickle), truncated, or does not match the model asked for."""


class TrainingDivergedError(CalikdError, FloatingPointError):
    """The training loss became NaN or inf (a too high learning rate, or a teacher with broken outputs)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message, hint or "lower the learning rate (--lr) or clip the gradients (--grad-clip)"
        )


class WriteError(CalikdError, OSError):
    """A file could not be written (disk full, quota, permissions); the message names the file. Also an
    :class:`OSError`, so code that handles failed writes keeps doing so."""

    def __init__(self, path: str, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        hint = (
            "free some space on that disk (or raise the quota), or write to another folder with --out"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "check the folder's permissions and free space, or write to another folder with --out"
        )
        CalikdError.__init__(self, f"cannot write '{path}': {reason}", hint)
        self.errno, self.strerror, self.filename = exc.errno, exc.strerror, path


class CalikdDeprecationWarning(DeprecationWarning):
    """An old spelling (an option, a flag) that still works for one release; the CLI prints it."""


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (a scheduler's time limit, ``kill``): it unwinds like Ctrl-C, so run-folder
    locks are released and a sweep puts its current run back to pending; the CLI exits with 143."""


class ModelError(CalikdError, KeyError):
    """An unknown model name or invalid model arguments."""

    def __str__(self) -> str:  # KeyError would quote the message
        return CalikdError.__str__(self)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string.

    Equally close choices are told apart by the longer prefix shared with ``name``, then by their order
    (``resnet2O`` suggests ``resnet20``, not ``resnet32``).
    """
    options = list(dict.fromkeys(choices))
    close = difflib.get_close_matches(name, options, n=max(len(options), 1), cutoff=0.5)
    if not close:
        return ""

    def rank(choice: str) -> tuple[float, int, int]:
        ratio = difflib.SequenceMatcher(None, name, choice).ratio()
        prefix = next((i for i, (a, b) in enumerate(zip(name, choice, strict=False)) if a != b), len(choice))
        return round(ratio, 9), min(prefix, len(name)), -options.index(choice)

    return f" (did you mean '{max(close, key=rank)}'?)"
