"""Who a process is (``host:pid/token``) and whether such a process of this machine is gone: shared by the
results store (who claimed a run) and the run-folder lock (who writes a folder)."""

from __future__ import annotations

import os
import re
import secrets
import socket

_INIT_PID_NAMESPACE = 0xEFFFFFFC  # the inode of Linux's initial PID namespace (PROC_PID_INIT_INO)
_DEFAULT_WORKER = re.compile(r"(?P<host>.+):(?P<pid>[0-9]+)/[0-9a-f]+(?P<ns>@[0-9]+)?")


def default_worker() -> str:
    """``host:pid`` of this process: who claimed a run."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_namespace_tag() -> str:
    """``""`` in the initial PID namespace (or without PID namespaces), else ``@<inode>`` (a container):
    a pid names a process only within its namespace, so default worker names carry the tag."""
    try:
        inode = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return "" if inode == _INIT_PID_NAMESPACE else f"@{inode}"


PID_NAMESPACE_TAG = _pid_namespace_tag()


def new_worker_name() -> str:
    """A fresh ``host:pid/token[@namespace]`` of this process, which :func:`worker_is_gone` understands."""
    return f"{default_worker()}/{secrets.token_hex(3)}{PID_NAMESPACE_TAG}"


def worker_host_pid(worker: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a default worker name, or None for any other text."""
    match = _DEFAULT_WORKER.fullmatch(worker)
    return (match["host"], int(match["pid"])) if match else None


def worker_is_gone(worker: str | None) -> bool:
    """True if ``worker`` is a default worker name (``host:pid/token``) of a process of this machine and PID
    namespace that no longer exists: its runs can be taken over without waiting for the heartbeat to go
    stale. False when unsure (another machine or container, a name given by hand, a pid in use again)."""
    match = _DEFAULT_WORKER.fullmatch(worker or "")
    if os.name != "posix" or match is None or match["host"] != socket.gethostname():
        return False
    if (match["ns"] or "") != PID_NAMESPACE_TAG:
        return False
    pid = int(match["pid"])
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists, as another user
        return False
    return False
