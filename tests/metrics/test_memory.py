"""Memory stays O(chunk x C): no intermediate tensor is N x C-sized (fast, in-process), and the report on
N = 1,000,000 x C = 1000 float16 logits (~2 GB) stays within a peak-RSS bound (slow).

tracemalloc does not see torch's allocations, so the big run happens in a fresh subprocess that reports its
peak resident set size (``resource.getrusage``) before and after the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.overrides import TorchFunctionMode

from calikd.metrics import calibration_report

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from calikd.metrics import calibration_report

    n, c = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)  # memory is what is measured; one thread avoids OpenMP spin on a busy CPU
    gen = torch.Generator().manual_seed(0)
    logits = torch.empty(n, c, dtype=torch.float16)
    for start in range(0, n, 8192):
        rows = min(8192, n - start)
        logits[start : start + rows] = torch.randn(rows, c, generator=gen) * 3
    labels = torch.randint(0, c, (n,), generator=gen)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    rep = calibration_report(logits, labels)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "peak": peak, "logits": logits.numel() * 2, "seconds": seconds,
                      "ece": rep.ece, "n": rep.n_samples}))
    """
)

GIB = 1024**3


def run_report(n: int, c: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(n), str(c)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _storages(values: object) -> set[int]:
    items = values if isinstance(values, tuple | list) else (values,)
    return {t.untyped_storage().data_ptr() for t in items if isinstance(t, torch.Tensor)}


class LargestAllocation(TorchFunctionMode):
    """Records the largest new storage (bytes) any torch function returns while active (views excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = _storages(list(args) + list(kwargs.values()))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_no_intermediate_is_larger_than_a_chunk_or_a_column(dtype: torch.dtype) -> None:
    n, c, rows = 3000, 40, 50
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(n, c, generator=gen) * 3).to(dtype)
    labels = torch.randint(0, c, (n,), generator=gen)
    probs = torch.softmax(logits.double(), 1).to(dtype)
    with LargestAllocation() as mode:
        calibration_report(logits, labels, chunk_size=rows)
        calibration_report(probs, labels, from_probs=True, chunk_size=rows)
    # chunk buffers hold rows * c elements, per-sample vectors n (at most 8 bytes each); nothing is n * c
    assert 0 < mode.largest <= 8 * max(rows * c, n)


@pytest.mark.slow
def test_report_on_a_million_by_thousand_float16_fits() -> None:
    r = run_report(1_000_000, 1000)
    assert r["n"] == 1_000_000 and 0 <= r["ece"] <= 1
    assert r["peak"] < r["logits"] + 1.5 * GIB, r
    assert r["peak"] - r["before"] < 0.5 * GIB, r
    print(f"1e6 x 1000 float16 report: {r['seconds']:.1f} s, peak RSS {r['peak'] / GIB:.2f} GiB")
