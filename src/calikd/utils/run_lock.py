"""One writer per run folder: an exclusive lock file ``<folder>/.calikd.lock``, held for a run's life.

The file holds its owner's ``host:pid/token`` (see :mod:`calikd.utils.process`) and is created atomically
(written aside, then hard-linked into place, so it is never seen half-written). A second writer gets a
:class:`RunDirLockedError` naming the holder's pid and host. The lock is released on any exit of the
``with`` block (an exception, Ctrl-C, SIGTERM through the CLI); a lock left by a process killed outright
(SIGKILL, power loss) is taken over at once when that process was on this machine and no longer exists, as
the results store does for runs. A folder the lock had to create is removed again on release if it is empty,
so a run that fails before writing anything leaves no folder behind.

Trainers take the lock deep inside (once they know their folder): :func:`hold_run_dir` ties it to the
innermost open :func:`run_dir_lock_scope`, which releases it when the scope ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from calikd.errors import ConfigError
from calikd.utils.process import new_worker_name, worker_host_pid, worker_is_gone

F = TypeVar("F", bound=Callable[..., Any])
LOCK_NAME = ".calikd.lock"
_ATTEMPTS = 20


class RunDirLockedError(ConfigError):
    """Another process holds the folder's lock."""


def _missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    return missing


class RunDirLock:
    """The exclusive lock of ``folder`` (a context manager; :meth:`acquire` / :meth:`release` by hand)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.owner = new_worker_name()
        self.held = False
        self._created: list[Path] = []

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ acquire
    def acquire(self) -> None:
        """Take the lock, creating the folder if needed; :class:`RunDirLockedError` if another process
        holds it."""
        self._created = _missing_dirs(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for _ in range(_ATTEMPTS):
                if self._create():
                    self.held = True
                    return
                holder = self._read()
                if holder is None:
                    continue  # released meanwhile: try again
                if worker_is_gone(holder) and self._take_over(holder):
                    self.held = True
                    return
                if holder:
                    raise self._locked(holder)
                time.sleep(0.01)  # created but not written yet (the exclusive-create fallback): look again
            raise self._locked(self._read() or "")
        except OSError as exc:
            self._remove_created()
            raise ConfigError(
                f"cannot lock output folder '{self.folder}': {exc.strerror or exc}",
                hint="choose another folder with --out, or fix its permissions",
            ) from exc
        except BaseException:
            self._remove_created()
            raise

    def _locked(self, holder: str) -> RunDirLockedError:
        parsed = worker_host_pid(holder)
        who = f"pid {parsed[1]} on host {parsed[0]}" if parsed else f"'{holder.strip() or 'unknown'}'"
        return RunDirLockedError(
            f"output folder '{self.folder}' is in use by another calikd process ({who}): two runs writing "
            "one folder would mix their files",
            hint="wait for that run to finish or choose another --out folder; if that process is gone (it "
            f"ran on another machine or in a container), delete '{self.path}'",
        )

    def _write_aside(self) -> Path:
        tmp = self.folder / f"{LOCK_NAME}.{secrets.token_hex(4)}.tmp"
        with open(tmp, "w") as fh:
            fh.write(self.owner + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def _create(self) -> bool:
        """Create the lock file with our name in it; False if it exists."""
        tmp = self._write_aside()
        try:
            os.link(tmp, self.path)  # atomic, and fails if the lock exists
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network or FUSE filesystems): exclusive create
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(self.owner + "\n")
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _read(self) -> str | None:
        try:
            return self.path.read_text(errors="replace").strip()
        except FileNotFoundError:
            return None

    def _take_over(self, stale: str) -> bool:
        """Replace the lock of the dead process ``stale`` by ours; False if someone else moved first."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one taker at a time
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                return False  # replaced meanwhile
            if os.read(fd, 4096).decode(errors="replace").strip() != stale:
                return False
            os.replace(self._write_aside(), self.path)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------------------------ release
    def release(self) -> None:
        """Remove the lock file (if still ours) and the folders the lock created that stayed empty."""
        if self.held:
            self.held = False
            if self._read() == self.owner:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()  # only an empty folder
            except OSError:
                break
        self._created = []


_SCOPE: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "calikd_run_dir_locks", default=None
)


@contextlib.contextmanager
def run_dir_lock_scope() -> Iterator[None]:
    """Release, on leaving the block, every lock taken inside it with :func:`hold_run_dir`."""
    with contextlib.ExitStack() as stack:
        token = _SCOPE.set(stack)
        try:
            yield
        finally:
            _SCOPE.reset(token)


def hold_run_dir(folder: str | os.PathLike[str]) -> RunDirLock:
    """Lock ``folder`` until the innermost :func:`run_dir_lock_scope` ends."""
    stack = _SCOPE.get()
    if stack is None:
        raise RuntimeError("hold_run_dir() needs an open run_dir_lock_scope()")
    return stack.enter_context(RunDirLock(folder))


def locks_run_dir(fn: F) -> F:
    """Decorator: ``fn`` runs in a :func:`run_dir_lock_scope`, so the locks it takes with
    :func:`hold_run_dir` are released when it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with run_dir_lock_scope():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
