"""Every metric of a set of predictions from one pass over the chunks: :class:`CalibrationReport`.

``summary_metrics`` is the cheap subset (accuracy, NLL, ECE) used during training; it runs the same pass
with less requested, so its numbers are bit-identical to the report's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from calikd.errors import ConfigError
from calikd.metrics.accumulate import Request, accumulate, top_label_bins
from calikd.metrics.calibration import (
    calibration_error_from_bins,
    classwise_from_sums,
    decomposition_from_bins,
    overconfidence_from_bins,
)
from calikd.metrics.reliability import ReliabilityStats
from calikd.metrics.validation import check_n_bins, check_structure

_INTS = ("n_samples", "num_classes", "n_bins")
_STATS = ("reliability", "reliability_adaptive")


@dataclass(frozen=True)
class CalibrationReport:
    """All metrics (see :mod:`calikd.metrics.classification` and :mod:`calikd.metrics.calibration`).

    ``top5`` is ``None`` when ``num_classes < 5``. ``ece``, ``mce``, ``ece_l2``, ``oe``, ``ece_over``,
    ``ece_under`` and ``reliability`` use ``n_bins`` equal-width bins; ``ace`` and ``reliability_adaptive``
    the same number of equal-mass bins; ``classwise_ece`` equal-width bins per class.
    """

    n_samples: int
    num_classes: int
    n_bins: int
    accuracy: float
    top5: float | None
    nll: float
    brier: float
    entropy: float
    ece: float
    ace: float
    mce: float
    ece_l2: float
    classwise_ece: float
    oe: float
    ece_over: float
    ece_under: float
    reliability: ReliabilityStats
    reliability_adaptive: ReliabilityStats

    def scalars(self) -> dict[str, float | int | None]:
        """Every field except the reliability statistics."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _STATS}

    def keys(self) -> list[str]:
        """The scalar metric names: with :meth:`__getitem__`, ``report["ece"]`` and ``dict(report)`` work."""
        return list(self.scalars())

    def __getitem__(self, name: str) -> float | int | None:
        scalars = self.scalars()
        if name not in scalars:
            raise KeyError(f"{name!r} is not a metric of the report (its metrics: {', '.join(scalars)})")
        return scalars[name]

    def summary(self) -> dict[str, float]:
        """The :func:`summary_metrics` subset: accuracy, nll, ece."""
        return {"accuracy": self.accuracy, "nll": self.nll, "ece": self.ece}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``json.dumps(..., allow_nan=False)`` works)."""
        out: dict[str, Any] = dict(self.scalars())
        for name in _STATS:
            out[name] = getattr(self, name).to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationReport:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            missing, extra = sorted(names - set(data)), sorted(set(data) - names)
            raise ConfigError(f"CalibrationReport.from_dict: missing keys {missing}, unknown keys {extra}")
        values: dict[str, Any] = {}
        for name in names:
            v = data[name]
            if name in _STATS:
                values[name] = ReliabilityStats.from_dict(v)
            elif name in _INTS:
                values[name] = int(v)
            else:
                values[name] = None if v is None else float(v)
        return cls(**values)


def calibration_report(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> CalibrationReport:
    """Compute every metric in one chunked pass (plus an ``O(N log N)`` sort for the equal-mass bins)."""
    labels = check_structure(logits, labels)
    n_bins = check_n_bins(n_bins)
    num_classes = logits.shape[1]
    request = Request(
        n_bins=n_bins,
        entropy=True,
        width=True,
        keep_confidence=True,
        brier=True,
        topk=5 if num_classes >= 5 else None,
        classwise=True,
    )
    t = accumulate(logits, labels, request, from_probs=from_probs, chunk_size=chunk_size)
    assert t.brier is not None and t.entropy is not None and t.classwise is not None
    width, width_edges = top_label_bins(t, "width")
    mass, mass_edges = top_label_bins(t, "mass")
    over, under = decomposition_from_bins(width)
    n = t.n_samples
    return CalibrationReport(
        n_samples=n,
        num_classes=num_classes,
        n_bins=n_bins,
        accuracy=t.correct / n,
        top5=None if t.topk_correct is None else t.topk_correct / n,
        nll=t.nll / n,
        brier=t.brier / n,
        entropy=t.entropy / n,
        ece=calibration_error_from_bins(width, "l1"),
        ace=calibration_error_from_bins(mass, "l1"),
        mce=calibration_error_from_bins(width, "max"),
        ece_l2=calibration_error_from_bins(width, "l2"),
        classwise_ece=classwise_from_sums(t.classwise.count, t.classwise.prob_sum, t.classwise.label_count),
        oe=overconfidence_from_bins(width),
        ece_over=over,
        ece_under=under,
        reliability=ReliabilityStats.from_bins(width, width_edges, "width"),
        reliability_adaptive=ReliabilityStats.from_bins(mass, mass_edges, "mass"),
    )


def summary_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Accuracy, NLL and ECE (``n_bins`` equal-width bins) as one JSON-ready dict; the same numbers as
    :func:`calibration_report`'s, at a fraction of its cost."""
    labels = check_structure(logits, labels)
    request = Request(n_bins=check_n_bins(n_bins), width=True)
    t = accumulate(logits, labels, request, from_probs=from_probs, chunk_size=chunk_size)
    assert t.width is not None
    ece = calibration_error_from_bins(t.width, "l1")
    return {"accuracy": t.correct / t.n_samples, "nll": t.nll / t.n_samples, "ece": ece}
