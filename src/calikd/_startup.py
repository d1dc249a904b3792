"""Process set-up done once, when calikd is imported, before torch starts its thread pool.

Two settings that cost nothing and were measured to help on the project's CPUs (README "Speed"):

- **OpenMP wait policy.** torch's OpenMP threads spin while they wait for work. On a machine shared with
  another busy process that spinning steals the cores and slows a run several-fold;
  ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep. It only takes effect if set before torch is
  first imported, and is left alone when the user set it.
- **An allocator that keeps its memory.** glibc's malloc returns every large buffer (over 128 KiB-32 MiB,
  the dynamic mmap threshold) to the OS when it is freed, so every training step faults the same
  activation buffers in again (kernel time, page faults). Raising the mmap and trim thresholds with
  ``mallopt`` keeps freed memory in the heap for the next step. Other allocators (jemalloc, tcmalloc
  preloaded with ``LD_PRELOAD``) are left as they are.

``CALIKD_TUNE_PROCESS=0`` turns both off (the benchmarks use it for their reference loop).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = (
    1 << 30
)  # buffers up to 1 GiB come from the heap (mallopt returns 0 where glibc caps it lower)
_TRIM_THRESHOLD = 1 << 30

STATE: dict[str, str] = {}


def enabled() -> bool:
    """False when ``CALIKD_TUNE_PROCESS`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get("CALIKD_TUNE_PROCESS", "1").strip().lower() not in ("0", "false", "no", "off")


def _preloaded_allocator() -> str | None:
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return name
    return None


def tune_allocator() -> str:
    """Keep freed memory in glibc's heap (``mallopt``); returns what was done, in words."""
    if "allocator" in STATE:
        return STATE["allocator"]
    if not enabled():
        outcome = "default (CALIKD_TUNE_PROCESS=0)"
    elif (other := _preloaded_allocator()) is not None:
        outcome = f"{other} (preloaded, left as is)"
    elif sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        outcome = "default (not glibc)"
    else:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) or libc.mallopt(
                _M_MMAP_THRESHOLD,
                32 << 20,  # the cap of older glibc on 64-bit
            )
            ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        except (OSError, AttributeError):
            ok = 0
        outcome = "glibc, mmap/trim thresholds raised" if ok else "default (mallopt refused)"
    STATE["allocator"] = outcome
    return outcome


def set_omp_wait_policy() -> str:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user set one or torch is already loaded; returns the policy."""
    if "omp_wait_policy" in STATE:
        return STATE["omp_wait_policy"]
    current = os.environ.get("OMP_WAIT_POLICY")
    if current is not None:
        outcome = f"{current} (set by the user)"
    elif not enabled():
        outcome = "default (CALIKD_TUNE_PROCESS=0)"
    elif "torch" in sys.modules:
        outcome = "default (torch was imported before calikd)"
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        outcome = "PASSIVE"
    STATE["omp_wait_policy"] = outcome
    return outcome


def tune_process() -> dict[str, str]:
    """Apply both settings (idempotent) and return what was done, for logs and benchmark output."""
    return {"omp_wait_policy": set_omp_wait_policy(), "allocator": tune_allocator()}
