"""Transformed teacher matching (TTM; Zheng & Yang, ICLR 2024): only the teacher is softened.

Temperature scaling of the teacher is the power transform ``p_t^gamma / sum_j p_t,j^gamma`` with
``gamma = 1 / T``; the student's output is left as it is::

    TTM = KL(softmax(z_t / T) || softmax(z_s))        summed over classes, mean over the batch (no T^2)

The paper shows this equals KD plus a Renyi-entropy regulariser on the student, hence better-calibrated,
less over-confident students. Total loss: ``ce_weight * CE + kd_weight * TTM`` (the paper's
``H(y, q) + beta * TTM``).

Defaults: the paper's CIFAR-100 setting for ResNet32x4 -> ResNet8x4 (appendix A.4, Table 8):
gamma = 0.1 (T = 10), beta = 100, CE weight 1. (Other pairs there: gamma 0.1-0.4, beta 7-101, e.g.
gamma 0.1 / beta 45 for VGG13 -> VGG8, the example in ``zkxufo/TTM``'s README.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.methods.kd import kd_loss
from calikd.distill.registry import register_distiller
from calikd.utils.config import option


def ttm_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 10.0,
    *,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """``KL(softmax(z_t / T) || softmax(z_s))``, mean over the batch (``reduction="none"``: per sample)."""
    return kd_loss(student_logits, teacher_logits, temperature, temperature_on="teacher", reduction=reduction)


@dataclass
class TTMConfig(DistillerConfig):
    """Options of TTM."""

    ce_weight: float = option(1.0, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(100.0, "weight beta of the transformed-teacher matching term", min=0.0)
    tau: float = option(
        10.0, "temperature T of the teacher only (power transform gamma = 1 / T)", min=0.0, exclusive_min=True
    )


@register_distiller("ttm")
class TTM(Distiller):
    """Transformed teacher matching: the student's plain softmax matches the temperature-softened teacher."""

    config_class = TTMConfig
    source = "Zheng & Yang, ICLR 2024"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = ttm_loss(step.student_logits, step.teacher_logits, cfg.tau)
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
