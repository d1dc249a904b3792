r"""Isotonic regression (Zadrozny & Elkan, 2002), one-vs-rest over the classes, renormalised.

For each class ``c`` a non-decreasing map ``f_c`` is fitted from ``p_c = softmax(z)_c`` to the indicator
``1[y = c]`` by weighted least squares (samples with equal ``p_c`` are first merged into one point weighted by
their count, whose target is their mean), solved exactly by the pool-adjacent-violators algorithm (PAV):
scan left to right, and whenever a block's mean is not above its predecessor's, merge the two into one block
with the weighted mean -- the result is the unique isotonic least-squares fit. ``f_c`` interpolates linearly
between the fitted points and is constant beyond the first and last (the same function as scikit-learn's
``IsotonicRegression(out_of_bounds="clip")``, which the tests check to 1e-9).

``transform`` computes ``q_c = max(f_c(p_c), floor)`` (``floor = 1e-6``), renormalises across classes and
returns the **log-probabilities** ``log(q_c / sum_k q_k)``. It runs on the CPU (numpy) and returns the
result on the input's device.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from calikd.calibration.base import Calibrator
from calikd.calibration.registry import register_calibrator
from calikd.errors import ConfigError

__all__ = ["IsotonicRegression", "isotonic_fit", "isotonic_predict", "pav"]

_TIE_EPS = float(np.finfo(np.float64).resolution)  # x values closer than this are one point


def pav(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Non-decreasing least-squares fit of ``y`` with ``weights`` (pool adjacent violators, O(n))."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    sums: list[float] = []  # per block: sum w*y, sum w, number of points
    totals: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        swy, sw, size = wi * yi, wi, 1
        while sums and sums[-1] * sw >= swy * totals[-1]:  # previous mean >= this mean: pool them
            swy += sums.pop()
            sw += totals.pop()
            size += sizes.pop()
        sums.append(swy)
        totals.append(sw)
        sizes.append(size)
    return np.repeat(np.asarray(sums) / np.asarray(totals), sizes)


def isotonic_fit(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints ``(xs, ys)`` of the isotonic fit of ``y`` on ``x`` (ties in ``x`` merged first)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.lexsort((y, x))
    x, y, w = x[order], y[order], w[order]
    # Merge runs of (nearly) equal x: a new point starts where x exceeds the run's first x by >= _TIE_EPS.
    gaps = np.diff(x)
    if not np.any((gaps > 0) & (gaps < _TIE_EPS)):  # only exact ties: vectorised
        idx = np.concatenate([[0], np.flatnonzero(gaps > 0) + 1])
    else:
        starts, first = [0], x[0]
        for i in range(1, len(x)):
            if x[i] - first >= _TIE_EPS:
                starts.append(i)
                first = x[i]
        idx = np.asarray(starts)
    wsum = np.add.reduceat(w, idx)
    ymean = np.add.reduceat(w * y, idx) / wsum
    xs = x[idx]
    ys = pav(ymean, wsum)
    # Keep only the ends of constant runs: interior points do not change the interpolant.
    keep = np.ones(len(ys), dtype=bool)
    if len(ys) > 2:
        keep[1:-1] = (ys[1:-1] != ys[:-2]) | (ys[1:-1] != ys[2:])
    return xs[keep], ys[keep]


def isotonic_predict(xs: np.ndarray, ys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The fit at ``x``: linear between breakpoints, constant beyond them."""
    return np.interp(np.asarray(x, dtype=np.float64), xs, ys)


@register_calibrator("isotonic")
class IsotonicRegression(Calibrator):
    """One-vs-rest isotonic regression on ``p_c``, renormalised; returns log-probabilities."""

    def __init__(self, floor: float = 1e-6) -> None:
        super().__init__()
        floor = float(floor)
        if not (0 < floor < 1):
            raise ConfigError(f"floor must lie in (0, 1); got {floor}")
        self.floor = floor
        self.breakpoints: list[tuple[np.ndarray, np.ndarray]] | None = None

    def hyperparams(self) -> dict[str, Any]:
        return {"floor": self.floor}

    def _expected_shapes(self, num_classes: int) -> dict[str, tuple[int, ...] | None]:
        return {"x": None, "y": None, "offsets": (num_classes + 1,)}

    def _n_parameters(self, num_classes: int) -> int:
        return num_classes

    def _fit(self, z: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        probs = torch.softmax(z, dim=1).numpy()
        y = labels.numpy()
        self.breakpoints = [isotonic_fit(probs[:, c], (y == c).astype(np.float64)) for c in range(z.shape[1])]
        sizes = [len(xs) for xs, _ in self.breakpoints]
        return {
            "objective": "isotonic_least_squares",
            "breakpoints": {"min": min(sizes), "max": max(sizes)},
            "iterations": 1,
            "converged": True,
        }

    def _transform(self, z: torch.Tensor) -> torch.Tensor:
        assert self.breakpoints is not None
        probs = torch.softmax(z.double(), dim=1).cpu().numpy()
        q = np.empty_like(probs)
        for c, (xs, ys) in enumerate(self.breakpoints):
            q[:, c] = isotonic_predict(xs, ys, probs[:, c])
        q = torch.from_numpy(q).clamp_min_(self.floor)
        return (q.log() - q.sum(1, keepdim=True).log()).to(device=z.device, dtype=z.dtype)

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self.breakpoints is None:
            return {}
        offsets = np.cumsum([0] + [len(xs) for xs, _ in self.breakpoints])
        return {
            "x": torch.from_numpy(np.concatenate([xs for xs, _ in self.breakpoints])),
            "y": torch.from_numpy(np.concatenate([ys for _, ys in self.breakpoints])),
            "offsets": torch.from_numpy(offsets.astype(np.int64)),
        }

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        x, y = tensors["x"].double().numpy(), tensors["y"].double().numpy()
        offsets = tensors["offsets"].long().tolist()
        if x.ndim != 1 or x.shape != y.shape or offsets[0] != 0 or offsets[-1] != len(x):
            raise ValueError(
                f"'x' and 'y' must be 1-D of equal length, and 'offsets' must run from 0 to {len(x)}"
            )
        out = []
        for a, b in itertools.pairwise(offsets):
            xs, ys = x[a:b], y[a:b]
            if b <= a or np.any(np.diff(xs) < 0) or np.any(np.diff(ys) < 0) or ys.min() < 0 or ys.max() > 1:
                raise ValueError(
                    "every class needs >= 1 breakpoint, sorted, with non-decreasing values in [0, 1]"
                )
            out.append((xs.copy(), ys.copy()))
        self.breakpoints = out
