"""Input checks shared by every metric: logits ``(N, C)`` and integer labels ``(N,)``."""

from __future__ import annotations

import torch

from calikd.errors import ConfigError


def check_logits_labels(logits: torch.Tensor, labels: torch.Tensor, *, from_probs: bool = False) -> None:
    """Raise :class:`ConfigError` for wrong shapes, NaN/inf, labels out of range, or probabilities as logits."""
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ConfigError("logits and labels must be torch tensors")
    if logits.ndim != 2:
        raise ConfigError(f"logits must have shape (N, C); got {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ConfigError(
            f"labels must have shape (N,) with N={logits.shape[0]} matching the logits; got {tuple(labels.shape)}"
        )
    if logits.shape[0] == 0:
        raise ConfigError("no samples: logits and labels are empty")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ConfigError(f"labels must be integer class indices; got dtype {labels.dtype}")
    num_classes = logits.shape[1]
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ConfigError(f"labels must lie in [0, {num_classes - 1}] for {num_classes} classes; found {lo}..{hi}")
    if not torch.isfinite(logits).all():
        raise ConfigError("logits contain NaN or inf", hint="check the model's outputs (diverged training?)")
    if not from_probs and looks_like_probabilities(logits):
        raise ConfigError(
            "these look like probabilities (rows in [0, 1] summing to 1); pass logits or use from_probs=True"
        )


def looks_like_probabilities(values: torch.Tensor) -> bool:
    """True when every row lies in [0, 1] and sums to 1 (to 1e-4)."""
    if values.shape[1] < 2:
        return False
    v = values.float()
    in_range = bool(((v >= 0) & (v <= 1)).all())
    return in_range and bool(torch.allclose(v.sum(dim=1), torch.ones(v.shape[0], device=v.device), atol=1e-4))


def as_log_probs(logits: torch.Tensor, *, from_probs: bool = False) -> torch.Tensor:
    """Log-probabilities in float32 (float64 stays float64); ``from_probs`` takes probabilities instead."""
    x = logits if logits.dtype == torch.float64 else logits.float()
    if from_probs:
        return x.clamp_min(torch.finfo(x.dtype).tiny).log()
    return torch.log_softmax(x, dim=1)
