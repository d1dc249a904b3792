r"""Histogram binning (Zadrozny & Elkan, 2001), one-vs-rest over the classes.

For each class ``c`` the probabilities ``p_c = softmax(z)_c`` of the val split are split into ``n_bins`` bins
and each bin gets the frequency of class ``c`` among its samples::

    theta_{c,m} = #{i in bin m : y_i = c} / #{i in bin m}

A bin is ``(e_m, e_{m+1}]`` (``p_c = 0`` falls in the first bin), as in :mod:`calikd.metrics`.
``binning="width"`` uses the edges ``m / n_bins``; ``binning="mass"`` uses the per-class quantiles of ``p_c``
(linear interpolation), so each bin holds about ``N / n_bins`` samples (ties can leave bins empty). An empty
bin, which has no frequency, gets its midpoint ``(e_m + e_{m+1}) / 2``.

``transform`` maps each ``p_c`` to its bin's ``theta``, floors it at ``floor`` (``1e-6``: a bin without
positives must not give probability 0, i.e. infinite NLL), renormalises across classes and returns the
**log-probabilities** ``log(q_c / sum_k q_k)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from calikd.calibration.base import Calibrator
from calikd.calibration.registry import register_calibrator
from calikd.errors import ConfigError

__all__ = ["BINNINGS", "HistogramBinning"]

BINNINGS = ("width", "mass")


def _bin_of(probs: torch.Tensor, inner_edges: torch.Tensor) -> torch.Tensor:
    """Bin index ``(C, N)`` of ``probs`` ``(N, C)`` under per-class inner edges ``(C, B-1)``, ``(lo, hi]``."""
    return torch.searchsorted(inner_edges.contiguous(), probs.T.contiguous(), right=False)


@register_calibrator("histogram")
class HistogramBinning(Calibrator):
    """One-vs-rest histogram binning, renormalised across classes; returns log-probabilities."""

    def __init__(self, n_bins: int = 15, binning: str = "width", floor: float = 1e-6) -> None:
        super().__init__()
        if int(n_bins) < 1:
            raise ConfigError(f"n_bins must be >= 1; got {n_bins}")
        if binning not in BINNINGS:
            raise ConfigError(f"unknown binning '{binning}'; valid: {', '.join(BINNINGS)}")
        floor = float(floor)
        if not (0 < floor < 1):
            raise ConfigError(f"floor must lie in (0, 1); got {floor}")
        self.n_bins, self.binning, self.floor = int(n_bins), binning, floor
        self.edges: torch.Tensor | None = None  # (C, n_bins - 1) inner edges
        self.values: torch.Tensor | None = None  # (C, n_bins) per-bin frequency
        self.min_samples = max(2, self.n_bins)

    def hyperparams(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins, "binning": self.binning, "floor": self.floor}

    def _expected_shapes(self, num_classes: int) -> dict[str, tuple[int, ...] | None]:
        return {"edges": (num_classes, self.n_bins - 1), "values": (num_classes, self.n_bins)}

    def _fit(self, z: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        n, c = z.shape
        probs = torch.softmax(z, dim=1)
        if self.binning == "width":
            inner = torch.arange(1, self.n_bins, dtype=torch.float64) / self.n_bins
            edges = inner.expand(c, -1).clone()
        else:
            q = torch.arange(1, self.n_bins, dtype=torch.float64) / self.n_bins
            edges = (
                torch.quantile(probs, q, dim=0).T.contiguous() if self.n_bins > 1 else probs.new_zeros(c, 0)
            )
        idx = _bin_of(probs, edges)  # (C, N)
        counts = torch.zeros(c, self.n_bins, dtype=torch.float64).scatter_add_(
            1, idx, torch.ones(c, n).double()
        )
        onehot = torch.nn.functional.one_hot(labels, c).T.double()
        positives = torch.zeros_like(counts).scatter_add_(1, idx, onehot)
        full = torch.cat(
            [torch.zeros(c, 1, dtype=torch.float64), edges, torch.ones(c, 1, dtype=torch.float64)], 1
        )
        midpoints = 0.5 * (full[:, :-1] + full[:, 1:])
        self.values = torch.where(counts > 0, positives / counts.clamp_min(1), midpoints)
        self.edges = edges
        return {
            "objective": "bin_frequency",
            "empty_bins": int((counts == 0).sum()),
            "iterations": 1,
            "converged": True,
        }

    def _transform(self, z: torch.Tensor) -> torch.Tensor:
        assert self.edges is not None and self.values is not None
        probs = torch.softmax(z, dim=1)
        idx = _bin_of(probs, self.edges.to(probs))
        q = self.values.to(probs).gather(1, idx).T.clamp_min(self.floor)
        return q.log() - q.sum(1, keepdim=True).log()

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"edges": self.edges, "values": self.values} if self.edges is not None else {}

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        edges, values = tensors["edges"].double(), tensors["values"].double()
        if not bool(((values >= 0) & (values <= 1)).all()) or (
            edges.shape[-1] > 1 and edges.diff(dim=1).min() < 0
        ):
            raise ValueError("bin values must lie in [0, 1] and bin edges must be sorted")
        self.edges, self.values = edges, values

    def _n_parameters(self, num_classes: int) -> int:
        return math.prod((num_classes, self.n_bins))
