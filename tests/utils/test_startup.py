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
def test_import_sets_the_wait_policy_and_keeps_freed_memory() -> None:
    tuned = run({"CALIKD_TUNE_PROCESS": None, "CALIKD_OMP_WAIT": "passive"})
    assert (
        tuned["omp"] == "PASSIVE" and tuned["state"]["omp_wait_policy"] == "PASSIVE (CALIKD_OMP_WAIT=passive)"
    )
    assert tuned["state"]["allocator"] == "glibc, mmap/trim thresholds raised"
    default = run({"CALIKD_TUNE_PROCESS": "0"})
    assert default["omp"] is None and default["state"]["allocator"].startswith("default")
    # 20 x 64 MiB filled: ~330,000 page faults when each buffer is mmapped afresh, next to none when kept
    assert default["faults"] > 100_000
    assert tuned["faults"] < default["faults"] / 10


def test_a_users_wait_policy_is_kept() -> None:
    kept = run({"OMP_WAIT_POLICY": "ACTIVE", "CALIKD_OMP_WAIT": "passive"})
    assert kept["omp"] == "ACTIVE" and "set in the environment" in kept["state"]["omp_wait_policy"]


def test_spin_keeps_openmps_default_and_auto_decides_by_load() -> None:
    spin = run({"CALIKD_OMP_WAIT": "spin"})
    assert spin["omp"] is None and spin["state"]["omp_wait_policy"] == "default (CALIKD_OMP_WAIT=spin)"
    auto = run({"CALIKD_OMP_WAIT": None})
    decided = auto["state"]["omp_wait_policy"]
    assert decided.startswith(
        ("PASSIVE (busy machine", "default (idle machine", "PASSIVE (machine load unknown")
    )
    assert (auto["omp"] == "PASSIVE") == decided.startswith("PASSIVE")


@pytest.mark.parametrize(
    ("reads", "cores", "policy", "why"),
    [
        (["0.10 0.20 0.30 1/200 99"] * 5, 2, "default", "idle machine: load 0.10 on 2 cores"),
        (["1.90 1.50 1.00 3/200 99"] * 5, 2, "PASSIVE", "busy machine: 2 other runnable task(s)"),
        # one momentary blip among five reads is not a neighbour (median of the running counts)
        (["0.5 0 0 1/9 1"] * 3 + ["0.5 0 0 4/9 1"] * 2, 2, "default", "idle machine"),
        # nothing runnable now, but the last minute was oversubscribed
        (["2.50 1.0 1.0 1/9 1"] * 5, 2, "PASSIVE", "busy machine: 0 other runnable task(s), load 2.50"),
        (["7.0 1 1 1/9 1"] * 5, 8, "default", "idle machine: load 7.00 on 8 cores"),
        ([], 2, "PASSIVE", "machine load unknown"),
        (["garbage"], 2, "PASSIVE", "machine load unknown"),
    ],
)
def test_wait_policy_decision(reads: list[str], cores: int, policy: str, why: str) -> None:
    from calikd._startup import decide_wait_policy

    got_policy, got_why = decide_wait_policy(reads, cores)
    assert got_policy == policy and got_why.startswith(why)
