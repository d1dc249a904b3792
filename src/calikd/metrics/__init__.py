"""Metrics on logits ``(N, C)``: classification, the calibration-error family, reliability statistics.

Conventions (details and formulas in the submodules):

* Inputs are logits ``(N, C)`` (float16, bfloat16, float32 or float64; CPU or GPU) and integer labels
  ``(N,)``; ``from_probs=True`` takes probabilities instead. Bad input raises
  :class:`~calikd.errors.ConfigError` (shapes, NaN/inf, labels out of range, probabilities passed as
  logits, ``n_bins < 1``).
* Every metric streams over row chunks (:mod:`~calikd.metrics.chunking`), so ``N = 10^6, C = 1000`` needs
  only ``O(chunk x C)`` extra memory (plus ``O(N)`` for equal-mass bins); ``calibration_report`` computes
  everything in one pass (:mod:`~calikd.metrics.accumulate`). Work is float32 per chunk (float64 for
  float64 input) with float64 accumulators.
* Bins (:mod:`~calikd.metrics.binning`): ``(lo, hi]`` intervals on float64 edges; confidence 0 goes to the
  first bin and exactly 1.0 to the last; equal-mass bins never split tied confidences.
* ECE family (:mod:`~calikd.metrics.calibration`): ECE/ACE/MCE/RMS on top-label confidence, classwise ECE,
  over-confidence error, and ``ECE = ECE_over + ECE_under``.
"""

from __future__ import annotations

from calikd.metrics.binning import bin_indices, mass_edges, width_edges
from calikd.metrics.calibration import (
    ECEDecomposition,
    adaptive_calibration_error,
    classwise_ece,
    ece_decomposition,
    expected_calibration_error,
    maximum_calibration_error,
    overconfidence_error,
)
from calikd.metrics.classification import (
    accuracy,
    brier_score,
    negative_log_likelihood,
    per_sample_entropy,
    predictive_entropy,
    top_k_accuracy,
)
from calikd.metrics.reliability import ReliabilityStats, reliability_statistics
from calikd.metrics.report import CalibrationReport, calibration_report, summary_metrics
from calikd.metrics.validation import check_logits_labels, looks_like_probabilities

__all__ = [
    "CalibrationReport",
    "ECEDecomposition",
    "ReliabilityStats",
    "accuracy",
    "adaptive_calibration_error",
    "bin_indices",
    "brier_score",
    "calibration_report",
    "check_logits_labels",
    "classwise_ece",
    "ece_decomposition",
    "expected_calibration_error",
    "looks_like_probabilities",
    "mass_edges",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "overconfidence_error",
    "per_sample_entropy",
    "predictive_entropy",
    "reliability_statistics",
    "summary_metrics",
    "top_k_accuracy",
    "width_edges",
]
