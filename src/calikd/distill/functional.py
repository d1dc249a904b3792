"""Small pure functions shared by the distillation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from calikd.errors import ConfigError


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against hard labels ``(B,)`` or label distributions ``(B, C)`` (mixup, CutMix)."""
    logits = logits.float()
    if target.ndim == 1:
        return F.cross_entropy(logits, target)
    if target.shape != logits.shape:
        raise ConfigError(
            f"soft targets of shape {tuple(target.shape)} do not match logits of shape {tuple(logits.shape)}"
        )
    return -(target.float() * F.log_softmax(logits, dim=1)).sum(1).mean()


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """Integer labels from hard labels or label distributions (the most weighted class)."""
    return target if target.ndim == 1 else target.argmax(1)


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7, *, unbiased: bool = True) -> torch.Tensor:
    """Z-score each row of ``logits`` (logit standardisation, Sun et al. 2024): ``(z - mean) / (std + eps)``.

    ``std`` is the unbiased (``C - 1``) standard deviation by default, as in the LS authors' ``normalize()``
    (``logit.std(dim=-1)``, used by their KD, DKD and MLKD); ``unbiased=False`` takes the population one,
    which makes every z-score larger by ``sqrt(C / (C - 1))`` (x1.054 at 10 classes, x1.005 at 100).
    """
    z = logits.float()
    mean = z.mean(dim=1, keepdim=True)
    std = z.std(dim=1, keepdim=True, unbiased=unbiased)
    return (z - mean) / (std + eps)


def kl_divergence(
    log_p_teacher: torch.Tensor, log_p_student: torch.Tensor, *, reduction: str = "batchmean"
) -> torch.Tensor:
    """``KL(p_teacher || p_student)`` from log-probabilities, summed over classes.

    ``reduction``: ``"batchmean"`` (mean over the batch) or ``"none"`` (one value per sample)."""
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)
    if reduction == "none":
        return per_sample
    if reduction != "batchmean":
        raise ConfigError(f"reduction must be 'batchmean' or 'none', got {reduction!r}")
    return per_sample.mean()


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def gradient_reversal(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward (CTKD's adversarial temperature)."""
    return _GradientReversal.apply(x, float(scale))
