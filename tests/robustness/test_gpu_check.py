"""``scripts/gpu-check --device cpu``: every device path of calikd at tiny sizes, one PASS/FAIL/SKIP line per
check, exit status 1 on any failure (on a GPU the same script runs at larger sizes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import calikd

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"
LINE = re.compile(r"(PASS|FAIL|SKIP)\s+(\S+)\s+(.*)\s+\[[0-9.]+ s\]")


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(calikd.__file__).parents[1]),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_gpu_check_passes_on_the_cpu(tmp_path: Path) -> None:
    from calikd.distill import list_distillers

    assert os.access(SCRIPT, os.X_OK)
    proc = _run("--work-dir", str(tmp_path / "work"), tmp_path=tmp_path)
    results = {m[2]: (m[1], m[3]) for m in map(LINE.fullmatch, proc.stdout.splitlines()) if m}
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = [
        "teacher",
        "calibrate",
        *(f"distill:{m}" for m in list_distillers()),
        "cache",
        "augment",
        "corruptions",
        "evaluate",
        "resume",
        "ray",
        "speed",
    ]
    assert list(results) == expected, proc.stdout
    assert all(status == "PASS" for name, (status, _) in results.items() if name != "ray"), proc.stdout
    assert results["ray"][0] == "SKIP" and "no GPU" in results["ray"][1]
    assert re.search(r"ratio [0-9.]+", results["speed"][1])
    assert "bit-identical" in results["cache"][1] and "bit-identical" in results["resume"][1]
    summary = f"gpu-check: {len(expected) - 1} passed, 0 failed, 1 skipped"
    assert proc.stdout.splitlines()[-1].startswith(summary)


def test_gpu_check_fails_with_a_non_zero_status(tmp_path: Path) -> None:
    proc = _run("--only", "speed", "--min-ratio", "1e9", tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^FAIL\s+speed\s+calikd's KD loop runs at", proc.stdout, re.M), proc.stdout
    assert "0 failed" not in proc.stdout.splitlines()[-1]
