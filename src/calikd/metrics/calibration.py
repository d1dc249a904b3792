"""Expected calibration error with a documented binning convention.

Bins: ``n_bins`` equal-width intervals over confidence; bin ``b`` is ``(b/n, (b+1)/n]``, except that a
confidence of exactly 0 falls in the first bin. A confidence of exactly 1.0 falls in the last bin, never in a
phantom extra bin. ``ECE = sum_b (n_b / N) * |acc_b - conf_b|``.
"""

from __future__ import annotations

import torch

from calikd.metrics.validation import as_log_probs, check_logits_labels


def bin_indices(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width bin of each confidence under the ``(lo, hi]`` convention (0 goes to bin 0)."""
    idx = torch.ceil(confidence.double() * n_bins).long() - 1
    return idx.clamp_(0, n_bins - 1)


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, *, from_probs: bool = False
) -> float:
    """Top-label ECE (L1, equal-width bins) in [0, 1]."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    check_logits_labels(logits, labels, from_probs=from_probs)
    probs = as_log_probs(logits, from_probs=from_probs).exp()
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).double()
    idx = bin_indices(confidence, n_bins)
    count = torch.zeros(n_bins, dtype=torch.float64, device=logits.device).index_add_(
        0, idx, torch.ones_like(correct)
    )
    conf_sum = torch.zeros_like(count).index_add_(0, idx, confidence.double())
    acc_sum = torch.zeros_like(count).index_add_(0, idx, correct)
    return float((conf_sum - acc_sum).abs().sum() / labels.shape[0])
