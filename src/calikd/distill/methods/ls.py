"""Logit standardisation in KD (LS; Sun, Ren, Li, Wang & Cao, CVPR 2024): Hinton KD on z-scored logits.

Each logit vector is standardised, ``z' = (z - mean(z)) / std(z)`` (:func:`standardize_logits`), which
amounts to a per-sample temperature ``std(z) * T`` with ``T`` a shared *base* temperature, so the student
matches the teacher's logit relations rather than its logit scale::

    LS = T^2 * KL(softmax(z'_t / T) || softmax(z'_s / T))        summed over classes, mean over the batch

``std`` is the unbiased standard deviation (divisor ``C - 1``), as in the authors' ``normalize()``
(``mdistiller/distillers/KD.py``: ``logit.std(dim=-1)``); ``population_std=true`` takes the population one
(divisor ``C``, what calikd used before), whose z-scores are larger by ``sqrt(C / (C - 1))``.

Defaults: the authors' KD + LS recipe for CIFAR-100 (``sunshangquan/logit-standardization-KD``,
``mdistiller/engine/cfg.py``: ``CFG.KD.TEMPERATURE = 2``, ``CFG.KD.LOSS.CE_WEIGHT = 0.1``,
``CFG.KD.LOSS.KD_WEIGHT = 9``, with ``tools/train.py --logit-stand --base-temp 2 --kd-weight 9``): base
temperature 2, KD weight 9, CE weight 0.1. (The CE weight there was 1 until their commit 3ec213f of
2024-03-10; their logs use a base temperature of 3 for a few pairs, e.g. VGG13 -> VGG8.) For DKD + LS use
``dkd`` with ``standardize=true``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.methods.kd import kd_loss
from calikd.distill.registry import register_distiller
from calikd.utils.config import option


def ls_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 2.0,
    *,
    unbiased_std: bool = True,
) -> torch.Tensor:
    """``T^2 * KL(softmax(z'_t / T) || softmax(z'_s / T))`` on z-scored logits ``z'``, mean over the batch."""
    return kd_loss(student_logits, teacher_logits, temperature, standardize=True, unbiased_std=unbiased_std)


@dataclass
class LSConfig(DistillerConfig):
    """Options of KD with logit standardisation."""

    ce_weight: float = option(0.1, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(9.0, "weight of the KL term on standardised logits", min=0.0)
    tau: float = option(2.0, "base temperature T applied to the z-scored logits", min=0.0, exclusive_min=True)
    population_std: bool = option(
        False, "z-score with the population std (divisor C) instead of the authors' unbiased one (C - 1)"
    )


@register_distiller("ls")
class LogitStandardization(Distiller):
    """KD on z-scored logits (logit standardisation): the student matches logit relations, not scale."""

    config_class = LSConfig
    source = "Sun et al., CVPR 2024 (sunshangquan/logit-standardization-KD)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = ls_loss(step.student_logits, step.teacher_logits, cfg.tau, unbiased_std=not cfg.population_std)
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
