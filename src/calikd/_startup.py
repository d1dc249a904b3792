"""Process set-up done once, when calikd is imported, before torch starts its thread pool.

Two settings that cost nothing and were measured to help on the project's CPUs (README "Speed"):

- **OpenMP wait policy, chosen by how busy the machine is at start.** torch's OpenMP threads spin for a
  while when they wait for work. On a quiet machine that spinning is what makes small kernels fast
  (``OMP_WAIT_POLICY=PASSIVE`` measured 15-25% slower on a KD loop); on a machine shared with other busy
  processes it steals their cores and slows every run 2-9x. So at import calikd reads how many other tasks
  are runnable right now (``/proc/loadavg``, median of 5 reads) and the 1-minute load: with any other work
  competing for the cores it sets ``PASSIVE``, on an idle machine it keeps OpenMP's default. It only takes
  effect if set before torch is first imported, and is left alone when the user set ``OMP_WAIT_POLICY``;
  ``CALIKD_OMP_WAIT=passive`` or ``=spin`` forces either (``auto`` is the default).
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
import statistics
import sys
import time

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


WAIT_CHOICES = ("auto", "passive", "spin")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_loadavg(samples: int = 5, gap_s: float = 0.002) -> list[str]:
    """``samples`` reads of ``/proc/loadavg`` (empty where there is none)."""
    reads = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                reads.append(f.read())
        except OSError:
            return []
        if i + 1 < samples:
            time.sleep(gap_s)
    return reads


def decide_wait_policy(loadavg_reads: list[str], cores: int) -> tuple[str, str]:
    """``("PASSIVE" | "default", why)`` from reads of ``/proc/loadavg`` on a machine with ``cores`` CPUs.

    Busy when another task is runnable now (median over the reads of the running count, less this
    process's own thread) or the 1-minute load exceeds the cores. No reads: PASSIVE (the safe side)."""
    parsed = []
    for text in loadavg_reads:
        fields = text.split()
        try:
            parsed.append((float(fields[0]), int(fields[3].split("/")[0])))
        except (IndexError, ValueError):
            continue
    if not parsed:
        return "PASSIVE", "machine load unknown"
    load1 = parsed[-1][0]
    others = max(0, statistics.median_low([running for _, running in parsed]) - 1)
    if others >= 1 or load1 > cores:
        return "PASSIVE", f"busy machine: {others} other runnable task(s), load {load1:.2f} on {cores} cores"
    return "default", f"idle machine: load {load1:.2f} on {cores} cores"


def set_omp_wait_policy() -> str:
    """Set ``OMP_WAIT_POLICY`` for this machine's load (see the module docstring) unless the user set one or
    torch is already loaded; returns the policy and why."""
    if "omp_wait_policy" in STATE:
        return STATE["omp_wait_policy"]
    current = os.environ.get("OMP_WAIT_POLICY")
    choice = os.environ.get("CALIKD_OMP_WAIT", "auto").strip().lower()
    if current is not None:
        outcome = f"{current} (set in the environment)"
    elif not enabled():
        outcome = "default (CALIKD_TUNE_PROCESS=0)"
    elif "torch" in sys.modules:
        outcome = "default (torch was imported before calikd)"
    elif choice == "spin":
        outcome = "default (CALIKD_OMP_WAIT=spin)"
    elif choice == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        outcome = "PASSIVE (CALIKD_OMP_WAIT=passive)"
    else:
        if choice != "auto":
            print(
                f"calikd: CALIKD_OMP_WAIT={choice!r} is not one of {WAIT_CHOICES}; using auto",
                file=sys.stderr,
            )
        policy, why = decide_wait_policy(read_loadavg(), _cores())
        if policy == "PASSIVE":
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        outcome = f"{policy} ({why})"
    STATE["omp_wait_policy"] = outcome
    return outcome


def tune_process() -> dict[str, str]:
    """Apply both settings (idempotent) and return what was done, for logs and benchmark output."""
    return {"omp_wait_policy": set_omp_wait_policy(), "allocator": tune_allocator()}
