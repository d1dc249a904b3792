"""Refined logit distillation (RLD; Sun, Chen, Lyu, Chen, Wang & Wang, "Knowledge Distillation with Refined
Logits", arXiv 2408.07703, ICCV 2025): KD that never teaches the student a wrong class.

Two terms, with ``y`` the label, ``m`` the teacher's top class and ``p = softmax(z / T_a)``::

    SCD = T_a^2 * KL([p_t(m), 1 - p_t(m)] || [p_s(y), 1 - p_s(y)])    sample confidence: the teacher's
                                                                       top-class confidence, put on y
    MCD = T^2 * KL(softmax(z_t / T)|_M || softmax(z_s / T)|_M)        masked correlation: only the classes
                                                                       the teacher ranks below y
    RLD = alpha * SCD + beta * MCD                                     mean over the batch

``M`` drops every class whose teacher logit is at least that of ``y`` (``y`` itself and any class a wrong
teacher ranks above it); a sample with no class below ``y`` contributes no MCD. The loss is ramped in
linearly over a warm-up like DKD's, per step (:meth:`calikd.distill.base.Distiller.warmup_ramp`).

Defaults: the authors' CIFAR-100 recipe (``zju-SWJ/RLD``, ``mdistiller/engine/cfg.py``: ``CE_WEIGHT 1,
ALPHA 1, BETA 8, T 4, WARMUP 20`` of 240 epochs, i.e. ``epochs / 12`` here; their README runs
``tools/train.py --cfg configs/cifar100/rld/vgg13_vgg8.yaml --same-t RLD.ALPHA 1. RLD.BETA 8. RLD.T 4.``,
where ``--same-t`` sets ``T_a = T``, which is the default here; the cfg's own ``ALPHA_T`` is 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.functional import hard_labels
from calikd.distill.methods.dkd import WARMUP_FRACTION
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

_MASKED = -1e9  # a logit that softmax turns into an exact zero


def _binary(probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[p_k, 1 - p_k]`` ``(B, 2)`` for class ``index`` of each row."""
    p = probs.gather(1, index.view(-1, 1))
    return torch.cat([p, 1.0 - p], dim=1)


def rld_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    alpha_temperature: float | None = None,
) -> torch.Tensor:
    """``alpha * SCD + beta * MCD`` (see the module docstring); ``alpha_temperature`` defaults to ``T``."""
    t_a = temperature if alpha_temperature is None else alpha_temperature
    if temperature <= 0 or t_a <= 0:
        raise ConfigError(f"RLD's temperatures must be positive, got {temperature} and {t_a}")
    z_s, z_t = student_logits.float(), teacher_logits.float()
    if z_s.shape != z_t.shape or z_s.ndim != 2:
        raise ConfigError(
            f"student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} must be equal (B, C)"
        )
    labels = hard_labels(target).long()
    if labels.shape != (z_s.shape[0],):
        raise ConfigError(
            f"RLD targets of shape {tuple(target.shape)} do not match logits {tuple(z_s.shape)}"
        )
    b_s = _binary(F.softmax(z_s / t_a, dim=1), labels)
    b_t = _binary(F.softmax(z_t / t_a, dim=1), z_t.argmax(1))
    scd = (b_t * (b_t.clamp_min(1e-12).log() - b_s.clamp_min(1e-12).log())).sum(1).mean() * t_a**2
    mask = z_t >= z_t.gather(1, labels.view(-1, 1))
    log_q_s = F.log_softmax((z_s / temperature).masked_fill(mask, _MASKED), dim=1)
    log_q_t = F.log_softmax((z_t / temperature).masked_fill(mask, _MASKED), dim=1)
    kept = (~mask).any(1, keepdim=True)  # rows with no class below y: uniform vs uniform, made exactly 0
    mcd = (log_q_t.exp() * (log_q_t - log_q_s) * kept).sum(1).mean() * temperature**2
    return alpha * scd + beta * mcd


@dataclass
class RLDConfig(DistillerConfig):
    """Options of RLD. The authors' per-pair configs (``configs/cifar100/rld/*.yaml``) change only the
    solver; alpha, beta, T are the defaults for every CIFAR-100 pair."""

    ce_weight: float = option(1.0, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(1.0, "overall weight of the RLD term (alpha, beta weight its parts)", min=0.0)
    alpha: float = option(1.0, "weight of the sample-confidence term SCD", min=0.0)
    beta: float = option(8.0, "weight of the masked-correlation term MCD", min=0.0)
    tau: float = option(4.0, "temperature T of MCD", min=0.0, exclusive_min=True)
    alpha_temperature: float | None = option(
        None, "temperature of SCD (default: T, the authors' --same-t)", min=0.0, exclusive_min=True
    )
    warmup_epochs: float | None = option(
        None, "epochs over which the RLD weight ramps linearly to 1 (default: epochs / 12; 0 = none)", min=0.0
    )


@register_distiller("rld")
class RLD(Distiller):
    """Refined logit distillation: the teacher's confidence on the label, and its ranking below the label."""

    config_class = RLDConfig
    source = "Sun et al., ICCV 2025, arXiv 2408.07703 (zju-SWJ/RLD)"

    warmup_fraction = WARMUP_FRACTION

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = rld_loss(
            step.student_logits,
            step.teacher_logits,
            step.target,
            cfg.alpha,
            cfg.beta,
            cfg.tau,
            cfg.alpha_temperature,
        )
        ramp = self.warmup_ramp()
        return {**self.ce_term(step), "kd": cfg.kd_weight * ramp * loss}
