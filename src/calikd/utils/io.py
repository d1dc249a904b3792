"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from calikd.errors import ConfigError, WriteError


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched; a failed write (a full
    disk) raises :class:`~calikd.errors.WriteError` naming ``path``. The file gets the usual
    permissions of a new file (``0o666`` minus the umask), not ``mkstemp``'s private ``0o600``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError | FileNotFoundError):
            raise _write_error(path, exc) from exc  # e.g. a full disk: say which file
        raise


def _write_error(path: Path, exc: OSError) -> WriteError:
    return exc if isinstance(exc, WriteError) else WriteError(str(path), exc)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def json_ready(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON ``null``: "undefined", e.g. the
    ECE of a run without a val split), so that the JSON written is standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """The JSON text calikd writes into files: sorted keys, non-finite floats as ``null`` (see
    :func:`json_ready`) and ``allow_nan=False``, so that no file ever holds ``NaN`` or ``Infinity``."""
    return json.dumps(json_ready(obj), indent=indent, sort_keys=True, allow_nan=False)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON (:func:`json_text`) to ``path`` atomically."""
    text = json_text(obj) + "\n"
    with atomic_write(path, "w") as fh:
        fh.write(text)


def _not_writable(path: Path, reason: str) -> ConfigError:
    return ConfigError(
        f"output folder '{path}' is not writable: {reason}",
        hint="choose another folder with --out, or fix its permissions",
    )


def _file_in_the_way(path: Path) -> str | None:
    """Why ``path`` cannot be a folder because it, or the nearest existing ancestor, is a file."""
    for p in (path, *path.parents):
        try:
            mode = p.stat().st_mode  # one look: another process (a DDP rank) may create the folder meanwhile
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(mode):
            return None
        return "it is a file, not a folder" if p == path else f"'{p}' is a file, not a folder"
    return None


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Check, without creating anything, that ``path`` is (or can be created as) a folder to write files in.

    The check writes and removes a temporary file in ``path`` or its nearest existing ancestor. Raises
    :class:`calikd.errors.ConfigError` naming the folder otherwise.
    """
    path = Path(path)
    reason = _file_in_the_way(path)
    if reason is not None:
        raise _not_writable(path, reason)
    existing = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".calikd-write-test."):
            pass
    except OSError as exc:
        raise _not_writable(path, str(exc.strerror or exc)) from exc
    return path


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that files can be written there.

    Raises :class:`calikd.errors.ConfigError` naming the folder otherwise.
    """
    path = Path(path)
    reason = _file_in_the_way(path)
    if reason is not None:
        raise _not_writable(path, reason)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".calikd-write-test."):
            pass
    except OSError as exc:
        raise _not_writable(path, str(exc.strerror or exc)) from exc
    return path
