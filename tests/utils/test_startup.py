"""Process set-up at import: OpenMP wait policy and an allocator that keeps its memory (and the opt-out)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, resource
import calikd
import torch
from calikd._startup import STATE
faults = []
for _ in range(2):  # allocate and free 64 MiB buffers; the second pass shows whether memory was kept
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        x = torch.empty(16 * 1024 * 1024).fill_(1.0)
        del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"state": STATE, "omp": os.environ.get("OMP_WAIT_POLICY"), "faults": faults[1]}))
"""


def run(env_changes: dict[str, str | None]) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


glibc = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


@glibc
def test_import_sets_passive_wait_and_keeps_freed_memory() -> None:
    tuned = run({"CALIKD_TUNE_PROCESS": None})
    assert tuned["omp"] == "PASSIVE"
    assert tuned["state"]["allocator"] == "glibc, mmap/trim thresholds raised"
    default = run({"CALIKD_TUNE_PROCESS": "0"})
    assert default["omp"] is None and default["state"]["allocator"].startswith("default")
    # 20 x 64 MiB filled: ~330,000 page faults when each buffer is mmapped afresh, next to none when kept
    assert default["faults"] > 100_000
    assert tuned["faults"] < default["faults"] / 10


def test_a_users_wait_policy_is_kept() -> None:
    kept = run({"OMP_WAIT_POLICY": "ACTIVE"})
    assert kept["omp"] == "ACTIVE" and "set by the user" in kept["state"]["omp_wait_policy"]
