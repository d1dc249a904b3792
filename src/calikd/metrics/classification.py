"""Accuracy, top-k accuracy, NLL, Brier score and predictive entropy on logits ``(N, C)``.

* accuracy: ``argmax_c x_c == y`` (ties: the lowest class index wins, as ``torch.argmax``).
* top-k accuracy: ``y`` is among the first ``k`` classes when sorted by logit, descending, ties broken by
  class index; ``top_k_accuracy(k=1) == accuracy``.
* NLL: mean ``-log p_y`` in nats (with ``from_probs=True``, ``p_y`` is floored at the dtype's ``tiny``).
* Brier score (multiclass, Brier 1950): mean over samples of ``sum_c (p_c - [y = c])^2``, in [0, 2]
  (0: certain and right; 2: certain and wrong). Not divided by ``C``.
* predictive entropy: ``-sum_c p_c log p_c`` in nats, in [0, log C]; mean, or per sample.
"""

from __future__ import annotations

import torch

from calikd.errors import ConfigError
from calikd.metrics.accumulate import Request, accumulate
from calikd.metrics.validation import check_logits, check_structure


def accuracy(
    logits: torch.Tensor, labels: torch.Tensor, *, from_probs: bool = False, chunk_size: int | None = None
) -> float:
    """Top-1 accuracy in [0, 1]."""
    labels = check_structure(logits, labels)
    totals = accumulate(logits, labels, Request(), from_probs=from_probs, chunk_size=chunk_size)
    return totals.correct / totals.n_samples


def top_k_accuracy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    *,
    from_probs: bool = False,
    chunk_size: int | None = None,
) -> float:
    """Top-k accuracy in [0, 1] (``1 <= k <= C``)."""
    labels = check_structure(logits, labels)
    num_classes = logits.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise ConfigError(f"k must be an integer in [1, {num_classes}] for {num_classes} classes; got {k!r}")
    totals = accumulate(logits, labels, Request(topk=k), from_probs=from_probs, chunk_size=chunk_size)
    assert totals.topk_correct is not None
    return totals.topk_correct / totals.n_samples


def negative_log_likelihood(
    logits: torch.Tensor, labels: torch.Tensor, *, from_probs: bool = False, chunk_size: int | None = None
) -> float:
    """Mean NLL (cross-entropy) in nats."""
    labels = check_structure(logits, labels)
    totals = accumulate(logits, labels, Request(), from_probs=from_probs, chunk_size=chunk_size)
    return totals.nll / totals.n_samples


def brier_score(
    logits: torch.Tensor, labels: torch.Tensor, *, from_probs: bool = False, chunk_size: int | None = None
) -> float:
    """Multiclass Brier score ``mean_i sum_c (p_ic - [y_i = c])^2`` in [0, 2]."""
    labels = check_structure(logits, labels)
    totals = accumulate(logits, labels, Request(brier=True), from_probs=from_probs, chunk_size=chunk_size)
    assert totals.brier is not None
    return totals.brier / totals.n_samples


def per_sample_entropy(
    logits: torch.Tensor, *, from_probs: bool = False, chunk_size: int | None = None
) -> torch.Tensor:
    """Predictive entropy of each sample, ``(N,)`` float64 in nats, on the logits' device."""
    check_logits(logits)
    labels = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
    request = Request(entropy=True, per_sample_entropy=True)
    totals = accumulate(logits, labels, request, from_probs=from_probs, chunk_size=chunk_size)
    assert totals.entropy_per_sample is not None
    return totals.entropy_per_sample


def predictive_entropy(
    logits: torch.Tensor, *, from_probs: bool = False, chunk_size: int | None = None
) -> float:
    """Mean predictive entropy in nats, in [0, log C]."""
    check_logits(logits)
    labels = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
    totals = accumulate(logits, labels, Request(entropy=True), from_probs=from_probs, chunk_size=chunk_size)
    assert totals.entropy is not None
    return totals.entropy / totals.n_samples
