"""Metrics on logits ``(N, C)``: accuracy, NLL, ECE.

Every function validates its input (shapes, NaN/inf, labels in range, probabilities passed as logits).
"""

from __future__ import annotations

import torch

from calikd.metrics.calibration import bin_indices, expected_calibration_error
from calikd.metrics.classification import accuracy, negative_log_likelihood
from calikd.metrics.validation import check_logits_labels, looks_like_probabilities

__all__ = [
    "accuracy",
    "bin_indices",
    "check_logits_labels",
    "expected_calibration_error",
    "looks_like_probabilities",
    "negative_log_likelihood",
    "summary_metrics",
]


def summary_metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL and ECE (15 equal-width bins) as one JSON-ready dict."""
    return {
        "accuracy": accuracy(logits, labels),
        "nll": negative_log_likelihood(logits, labels),
        "ece": expected_calibration_error(logits, labels, n_bins=n_bins),
    }
