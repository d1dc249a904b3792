"""Speed measurements remembered per machine, so later runs skip the probe.

One JSON file, ``$XDG_CACHE_HOME/calikd/speed-probes.json`` (default ``~/.cache/calikd``), or the file
``$CALIKD_PROBE_CACHE`` names; ``CALIKD_PROBE_CACHE=off`` neither reads nor writes one. An entry is keyed by
what the measurement depends on: the machine (CPU model, cores, torch threads, GPU), the torch version,
the model, the input shape and batch size. A damaged or unwritable file is ignored: the probe then runs again.
A measurement taken while the machine is busy (load average over 1.5 x its cores) serves its own run but is
not remembered, so a later run on a quieter machine measures again.

Inside :func:`pinned` (a sweep runs each of its runs so, with ``<sweep out>/speed-probes.json``) a second file
is read first and always written, busy or not, under an exclusive lock around each lookup-measure-remember
(:func:`exclusive`): every run of the sweep takes the first measurement (or the machine's remembered one), so
runs compared with each other train on the same numeric path and a resumed sweep keeps it. Without it, two
runs measured on a busy machine could pick different paths (fp32 vs fp32 + channels_last: the same maths,
other rounding) and differ by more than their seeds explain.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from calikd.data.locate import cache_root
from calikd.utils.io import atomic_write_json

FILE_NAME = "speed-probes.json"
VERSION = 1


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), for keys and for every printed speed figure."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key(device: torch.device) -> dict[str, Any]:
    """What a timing on ``device`` depends on besides the model and its input."""
    key: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device.type,
    }
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def cache_file() -> Path | None:
    """Where probes are remembered (None when ``CALIKD_PROBE_CACHE=off``)."""
    value = os.environ.get("CALIKD_PROBE_CACHE", "").strip()
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value).expanduser() if value else cache_root() / FILE_NAME


def _digest(kind: str, key: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, "key": key}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if (
        not isinstance(data, dict)
        or data.get("version") != VERSION
        or not isinstance(data.get("entries"), dict)
    ):
        return {}
    return data["entries"]


_PINNED: list[Path] = []  # the file of the innermost :func:`pinned`


@contextlib.contextmanager
def pinned(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, measurements are pinned to ``path`` (see the module docstring); None: no-op."""
    if path is None:
        yield
        return
    _PINNED.append(Path(path))
    try:
        yield
    finally:
        _PINNED.pop()


def is_pinned() -> bool:
    """Whether measurements go to a pinned file now (inside :func:`pinned`)."""
    return bool(_PINNED)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the pinned file's lock (``<file>.lock``) over a lookup, measurement and remember (no-op
    unpinned)."""
    if not _PINNED:
        yield
        return
    import fcntl

    lock = _PINNED[-1].with_name(_PINNED[-1].name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 - closed below
        fcntl.flock(fh, fcntl.LOCK_EX)
    except OSError as exc:  # a file system without locks: measure unlocked (runs may then differ)
        warnings.warn(
            f"cannot lock {lock} ({exc}); speed measurements of the sweep are not serialised", stacklevel=3
        )
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _value(path: Path | None, digest: str) -> dict[str, Any] | None:
    entry = _read(path).get(digest) if path is not None else None
    if isinstance(entry, dict) and isinstance(entry.get("value"), dict):
        return entry["value"]
    return None


def _write(path: Path, kind: str, key: dict[str, Any], value: dict[str, Any]) -> bool:
    entries = _read(path)
    entries[_digest(kind, key)] = {"kind": kind, "key": key, "value": value}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"version": VERSION, "entries": entries})
    except (OSError, ValueError):
        return False
    return True


def lookup(kind: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The stored measurement of ``kind`` for ``key``, or None: the pinned file's first, then the machine's
    (which is then pinned too, so the rest of the sweep keeps it whatever the machine's file later holds)."""
    digest = _digest(kind, key)
    if _PINNED:
        value = _value(_PINNED[-1], digest)
        if value is not None:
            return value
    value = _value(cache_file(), digest)
    if value is not None and _PINNED:
        _write(_PINNED[-1], kind, key, value)
    return value


def busy_load() -> float | None:
    """The 1-minute load average when it exceeds 1.5 x the cores (timings then mislead), else None."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    return load if load > 1.5 * (os.cpu_count() or 1) else None


def remember(kind: str, key: dict[str, Any], value: dict[str, Any]) -> bool:
    """Store ``value`` for ``key`` in the pinned file (always) and the machine's; False when the machine's
    file did not take it (cache off or unwritable, or the machine busy)."""
    if _PINNED:
        _write(_PINNED[-1], kind, key, value)
    path = cache_file()
    if path is None or busy_load() is not None:
        return False
    return _write(path, kind, key, value)
