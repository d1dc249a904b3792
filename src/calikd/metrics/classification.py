"""Accuracy and negative log-likelihood on logits."""

from __future__ import annotations

import torch

from calikd.metrics.validation import as_log_probs, check_logits_labels


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    check_logits_labels(logits, labels)
    return float((logits.argmax(dim=1) == labels).double().mean())


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, *, from_probs: bool = False) -> float:
    """Mean NLL (cross-entropy) in nats, computed in float32 or better."""
    check_logits_labels(logits, labels, from_probs=from_probs)
    log_probs = as_log_probs(logits, from_probs=from_probs)
    return float(-log_probs.gather(1, labels.long().unsqueeze(1)).double().mean())
