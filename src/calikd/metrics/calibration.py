r"""The expected-calibration-error family on top-label confidences.

Notation: bin ``b`` holds ``n_b`` of the ``N`` samples (bins and edges: :mod:`calikd.metrics.binning`),
``conf_b`` is their mean top-label confidence ``max_c p_c``, ``acc_b`` their accuracy,
``gap_b = conf_b - acc_b`` and ``w_b = n_b / N``. Empty bins are skipped.

* ``ECE   = sum_b w_b |gap_b|`` (``norm="l1"``; Naeini et al. 2015, Guo et al. 2017)
* ``ECE_2 = sqrt(sum_b w_b gap_b^2)`` (``norm="l2"``, RMS calibration error)
* ``MCE   = max_b |gap_b|`` over non-empty bins (``norm="max"``)
* ``ACE``: ``norm="l1"`` with equal-mass bins (``binning="mass"``; Nixon et al. 2019)
* ``ECE_over = sum_{b: gap_b > 0} w_b gap_b``, ``ECE_under = sum_{b: gap_b < 0} w_b |gap_b|``, so
  ``ECE = ECE_over + ECE_under`` (Kim et al. 2025)
* ``OE = sum_b w_b conf_b max(gap_b, 0)`` (over-confidence error, Thulasidasan et al. 2019); since
  ``conf_b <= 1``, ``OE <= ECE_over``
* classwise ECE (Kull et al. 2019): for each class ``c``, bin ``p_c`` of **all** ``N`` samples into the
  equal-width bins, ``ECE_c = sum_b (n_cb / N) |mean p_c - freq(y = c)|`` within the bin; the result is the
  plain mean of ``ECE_c`` over all ``C`` classes (classes that never occur as a label included).

All values lie in [0, 1] and are computed from exact float64 per-bin sums (``|sum conf - sum acc| / N``),
never from rounded per-bin means.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from calikd.metrics.accumulate import Request, accumulate, top_label_bins
from calikd.metrics.binning import BinSums
from calikd.metrics.validation import BINNINGS, NORMS, check_choice, check_n_bins, check_structure


class ECEDecomposition(NamedTuple):
    """``ECE = over + under``: the parts from over-confident and under-confident bins."""

    over: float
    under: float

    @property
    def total(self) -> float:
        return self.over + self.under


def calibration_error_from_bins(bins: BinSums, norm: str = "l1") -> float:
    """ECE (``"l1"``), RMS ECE (``"l2"``) or MCE (``"max"``) from per-bin sums."""
    n = float(bins.count.sum())
    diff = bins.conf_sum - bins.acc_sum  # n_b * gap_b
    filled = bins.count > 0
    if norm == "l1":
        return float(diff.abs().sum() / n)
    if norm == "l2":
        return float(torch.sqrt((diff[filled].square() / bins.count[filled]).sum() / n))
    gaps = diff[filled].abs() / bins.count[filled]
    return float(gaps.max()) if gaps.numel() else 0.0


def decomposition_from_bins(bins: BinSums) -> ECEDecomposition:
    """``(ECE_over, ECE_under)`` from per-bin sums."""
    n = float(bins.count.sum())
    diff = bins.conf_sum - bins.acc_sum
    return ECEDecomposition(float(diff.clamp(min=0).sum() / n), float((-diff).clamp(min=0).sum() / n))


def overconfidence_from_bins(bins: BinSums) -> float:
    """``OE = sum_b w_b conf_b max(conf_b - acc_b, 0)`` from per-bin sums."""
    n = float(bins.count.sum())
    filled = bins.count > 0
    conf_mean = bins.conf_sum[filled] / bins.count[filled]
    over = (bins.conf_sum - bins.acc_sum)[filled].clamp(min=0)
    return float((conf_mean * over).sum() / n)


def classwise_from_sums(count: torch.Tensor, prob_sum: torch.Tensor, label_count: torch.Tensor) -> float:
    """Mean over classes of the one-vs-rest ECE, from ``(C, n_bins)`` sums."""
    n = float(count[0].sum())
    return float((prob_sum - label_count).abs().sum() / (n * count.shape[0]))


def _bins(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int,
    binning: str,
    from_probs: bool,
    chunk_size: int | None,
) -> BinSums:
    labels = check_structure(logits, labels)
    n_bins = check_n_bins(n_bins)
    binning = check_choice("binning", binning, BINNINGS)
    request = Request(n_bins=n_bins, width=binning == "width", keep_confidence=binning == "mass")
    totals = accumulate(logits, labels, request, from_probs=from_probs, chunk_size=chunk_size)
    return top_label_bins(totals, binning)[0]


def expected_calibration_error(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    norm: str = "l1",
    binning: str = "width",
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> float:
    """Top-label calibration error in [0, 1]: ``norm`` ``"l1"`` (ECE), ``"l2"`` (RMS) or ``"max"`` (MCE);
    ``binning`` ``"width"`` (equal-width, default) or ``"mass"`` (equal-mass, i.e. ACE for ``"l1"``)."""
    norm = check_choice("norm", norm, NORMS)
    return calibration_error_from_bins(_bins(logits, labels, n_bins, binning, from_probs, chunk_size), norm)


def adaptive_calibration_error(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    norm: str = "l1",
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> float:
    """ACE: :func:`expected_calibration_error` with equal-mass bins."""
    return expected_calibration_error(
        logits, labels, n_bins, norm, "mass", from_probs=from_probs, chunk_size=chunk_size
    )


def maximum_calibration_error(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    binning: str = "width",
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> float:
    """MCE: the largest ``|conf_b - acc_b|`` over non-empty bins."""
    return expected_calibration_error(
        logits, labels, n_bins, "max", binning, from_probs=from_probs, chunk_size=chunk_size
    )


def ece_decomposition(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    binning: str = "width",
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> ECEDecomposition:
    """``(ECE_over, ECE_under)``: the ECE of the over-confident (``conf_b > acc_b``) and under-confident
    (``conf_b < acc_b``) bins; they sum to the ECE with the same bins."""
    return decomposition_from_bins(_bins(logits, labels, n_bins, binning, from_probs, chunk_size))


def overconfidence_error(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    binning: str = "width",
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> float:
    """OE (Thulasidasan et al. 2019): ``sum_b w_b conf_b max(conf_b - acc_b, 0)``, in [0, ECE_over]."""
    return overconfidence_from_bins(_bins(logits, labels, n_bins, binning, from_probs, chunk_size))


def classwise_ece(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_bins: int = 15,
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> float:
    """Classwise ECE: the mean over all ``C`` classes of the one-vs-rest ECE of ``p_c`` (equal-width bins)."""
    labels = check_structure(logits, labels)
    request = Request(n_bins=check_n_bins(n_bins), classwise=True)
    totals = accumulate(logits, labels, request, from_probs=from_probs, chunk_size=chunk_size)
    assert totals.classwise is not None
    cw = totals.classwise
    return classwise_from_sums(cw.count, cw.prob_sum, cw.label_count)
