"""Per-bin reliability statistics (what a reliability diagram plots), JSON-ready.

Bins follow :mod:`calikd.metrics.binning`: bin ``b`` is ``(lo_b, hi_b]`` (the first bin also holds
``lo_0``). Empty bins are kept with ``count == 0`` and NaN mean confidence / accuracy; :meth:`to_dict`
writes those NaNs as ``None`` (strict JSON has no NaN) and :meth:`from_dict` reads them back as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from calikd.errors import ConfigError
from calikd.metrics.accumulate import Request, accumulate, top_label_bins
from calikd.metrics.binning import BinSums
from calikd.metrics.validation import BINNINGS, check_choice, check_n_bins, check_structure


def _nan_to_none(values: tuple[float, ...]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def _none_to_nan(values: Any) -> tuple[float, ...]:
    return tuple(math.nan if v is None else float(v) for v in values)


@dataclass(frozen=True, eq=False)
class ReliabilityStats:
    """Per-bin edges ``(lo, hi]``, sample count, mean top-label confidence and accuracy.

    Equality treats the NaNs of empty bins as equal (it compares :meth:`to_dict`).
    """

    binning: str
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    count: tuple[int, ...]
    mean_confidence: tuple[float, ...]
    accuracy: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.lo)
        if not all(len(getattr(self, f.name)) == n for f in fields(self) if f.name != "binning"):
            raise ConfigError("ReliabilityStats: lo, hi, count, mean_confidence, accuracy differ in length")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReliabilityStats) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.binning, self.lo, self.hi, self.count))

    @property
    def n_bins(self) -> int:
        return len(self.lo)

    @property
    def n_samples(self) -> int:
        return sum(self.count)

    @property
    def gap(self) -> tuple[float, ...]:
        """``mean_confidence - accuracy`` per bin (positive: over-confident; NaN for empty bins)."""
        return tuple(c - a for c, a in zip(self.mean_confidence, self.accuracy, strict=True))

    @classmethod
    def from_bins(cls, bins: BinSums, edges: torch.Tensor, binning: str) -> ReliabilityStats:
        count = bins.count.cpu()
        filled = count > 0
        nan = torch.full_like(count, math.nan)
        conf = torch.where(filled, bins.conf_sum.cpu() / count.clamp(min=1), nan)
        acc = torch.where(filled, bins.acc_sum.cpu() / count.clamp(min=1), nan)
        e = edges.cpu().tolist()
        return cls(
            binning=binning,
            lo=tuple(e[:-1]),
            hi=tuple(e[1:]),
            count=tuple(int(c) for c in count.tolist()),
            mean_confidence=tuple(conf.tolist()),
            accuracy=tuple(acc.tolist()),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists; NaN written as ``None``)."""
        return {
            "binning": self.binning,
            "lo": list(self.lo),
            "hi": list(self.hi),
            "count": list(self.count),
            "mean_confidence": _nan_to_none(self.mean_confidence),
            "accuracy": _nan_to_none(self.accuracy),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReliabilityStats:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ConfigError(
                f"ReliabilityStats.from_dict: expected keys {sorted(names)}, got {sorted(data)}"
            )
        return cls(
            binning=str(data["binning"]),
            lo=tuple(float(v) for v in data["lo"]),
            hi=tuple(float(v) for v in data["hi"]),
            count=tuple(int(v) for v in data["count"]),
            mean_confidence=_none_to_nan(data["mean_confidence"]),
            accuracy=_none_to_nan(data["accuracy"]),
        )


def reliability_statistics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    binning: str = "width",
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> ReliabilityStats:
    """Per-bin reliability statistics for equal-width (default) or equal-mass bins."""
    labels = check_structure(logits, labels)
    n_bins = check_n_bins(n_bins)
    binning = check_choice("binning", binning, BINNINGS)
    request = Request(n_bins=n_bins, width=binning == "width", keep_confidence=binning == "mass")
    totals = accumulate(logits, labels, request, from_probs=from_probs, chunk_size=chunk_size)
    bins, edges = top_label_bins(totals, binning)
    return ReliabilityStats.from_bins(bins, edges, binning)
