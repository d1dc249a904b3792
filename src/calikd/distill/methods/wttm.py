"""Weighted transformed teacher matching (WTTM; Zheng & Yang, ICLR 2024, Section 4).

TTM with a sample-adaptive weight: the power sum of the teacher's (untempered) probabilities,

    U_gamma(p_t) = sum_j p_t,j^gamma,   gamma = 1 / T,   p_t = softmax(z_t)

which is 1 for a one-hot teacher and ``C^(1 - gamma)`` for a uniform one, so samples on which the teacher
is unsure are matched more closely::

    WTTM = mean_i  U_gamma(p_t,i) * KL(softmax(z_t,i / T) || softmax(z_s,i))

(the paper's ``L = H(y, q) + beta * U_{1/T}(p^t) * D(p^t_T || q)``; its Algorithm 1 and ``zkxufo/TTM``'s
``distiller_zoo/wttm.py`` average ``U * KL`` over the batch). ``U`` is computed in log space,
``log U = logsumexp(z_t / T) - logsumexp(z_t) / T``.

Defaults: the paper's CIFAR-100 setting for ResNet32x4 -> ResNet8x4 (appendix A.4, Table 8):
gamma = 0.1 (T = 10), beta = 3, CE weight 1. (Other pairs there: beta 1.4-16, e.g. 2.25 for VGG13 -> VGG8.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.methods.ttm import ttm_loss
from calikd.distill.registry import register_distiller
from calikd.utils.config import option


def power_sum(teacher_logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """``U_gamma(softmax(z_t)) = sum_j softmax(z_t)_j^gamma`` per sample ``(B,)``, computed in log space."""
    z = teacher_logits.float()
    return torch.exp(torch.logsumexp(gamma * z, dim=1) - gamma * torch.logsumexp(z, dim=1))


def wttm_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 10.0
) -> torch.Tensor:
    """``mean_i U_{1/T}(p_t,i) * KL(softmax(z_t,i / T) || softmax(z_s,i))`` (see the module docstring)."""
    per_sample = ttm_loss(student_logits, teacher_logits, temperature, reduction="none")
    return (power_sum(teacher_logits, 1.0 / temperature).detach() * per_sample).mean()


@dataclass
class WTTMConfig(DistillerConfig):
    """Options of WTTM."""

    ce_weight: float = option(1.0, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(3.0, "weight beta of the power-sum-weighted matching term", min=0.0)
    tau: float = option(
        10.0, "temperature T of the teacher only (power transform gamma = 1 / T)", min=0.0, exclusive_min=True
    )


@register_distiller("wttm")
class WTTM(Distiller):
    """Weighted TTM: TTM weighted per sample by the power sum of the teacher's probabilities."""

    config_class = WTTMConfig
    source = "Zheng & Yang, ICLR 2024"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = wttm_loss(step.student_logits, step.teacher_logits, cfg.tau)
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
