"""Decoupled knowledge distillation (DKD; Zhao, Cui, Song, Qiu & Liang, CVPR 2022), with logit
standardisation (Sun et al., CVPR 2024) as an option.

The KD loss splits into a target-class part and a non-target part, which DKD weights independently::

    b = [p_y, 1 - p_y]                       binary target / non-target probabilities, p = softmax(z / T)
    p_hat = softmax(z_j / T for j != y)      distribution over the non-target classes only
    TCKD = KL(b_t || b_s),  NCKD = KL(p_hat_t || p_hat_s)
    DKD  = T^2 * (alpha * TCKD + beta * NCKD)           summed over classes, mean over the batch

``y`` is the ground-truth class (the most weighted class of a mixed target). The loss is ramped in linearly:
it is multiplied by ``min(progress / warmup_epochs, 1)``, progress being the epochs done after the step
(:meth:`calikd.distill.base.Distiller.warmup_ramp`): at an epoch's last step that is the authors' per-epoch
``min(epoch / warmup_epochs, 1)`` (:func:`warmup_factor`), and a run short enough that its warm-up lasts one
epoch still ramps (per epoch, its first epoch would run at full weight: a `cnn` student of a ResNet-20
collapsed to chance so on one of three seeds at lr 0.1).

Defaults: mdistiller's CIFAR-100 configuration (``mdistiller/engine/cfg.py``, the recipe of the paper's
ResNet32x4 -> ResNet8x4 result): CE weight 1.0, alpha 1.0, beta 8.0, T 4.0, warm-up 20 of 240 epochs;
the warm-up is therefore expressed as a fraction of the run, ``epochs / 12``, when not given. (Per-pair
configs there lower beta for some pairs, e.g. 2.0 for ResNet56 -> ResNet20.) The LS paper's DKD + LS
recipe is ``standardize=true, alpha=9, beta=72, tau=2`` (their ``tools/train.py`` multiplies alpha
and beta by ``--kd-weight 9`` and sets T to ``--base-temp 2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import Distiller, DistillerConfig, DistillStep, pair_table
from calikd.distill.functional import hard_labels, standardize_logits
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

WARMUP_FRACTION = 20 / 240  # the paper's 20 warm-up epochs of 240


def _split_log_probs(logits: torch.Tensor, target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of ``[p_y, 1 - p_y]`` ``(B, 2)`` and log-softmax over the non-target classes ``(B, C - 1)``."""
    batch, classes = logits.shape
    others = logits[~target_mask].view(batch, classes - 1)
    log_z = torch.logsumexp(logits, dim=1, keepdim=True)
    log_others = torch.logsumexp(others, dim=1, keepdim=True)
    log_binary = torch.cat([logits[target_mask].view(batch, 1) - log_z, log_others - log_z], dim=1)
    return log_binary, others - log_others


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` per row from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    standardize: bool = False,
) -> torch.Tensor:
    """``T^2 * (alpha * TCKD + beta * NCKD)``, mean over the batch (see the module docstring).

    ``target`` holds labels ``(B,)`` or label distributions ``(B, C)`` (their most weighted class is used).
    ``standardize`` z-scores both logit vectors first (logit standardisation).
    """
    if temperature <= 0:
        raise ConfigError(f"the distillation temperature must be positive, got {temperature}")
    z_s, z_t = student_logits.float(), teacher_logits.float()
    if z_s.shape != z_t.shape or z_s.ndim != 2:
        raise ConfigError(
            f"student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} must be equal (B, C) "
            "shapes: do the student and the teacher have the same number of classes?"
        )
    if z_s.shape[1] < 2:
        raise ConfigError("DKD needs at least two classes")
    labels = hard_labels(target).long()
    if labels.shape != (z_s.shape[0],):
        raise ConfigError(
            f"DKD targets of shape {tuple(target.shape)} do not match logits {tuple(z_s.shape)}"
        )
    if standardize:
        z_s, z_t = standardize_logits(z_s), standardize_logits(z_t)
    mask = F.one_hot(labels, z_s.shape[1]).bool()
    s_binary, s_others = _split_log_probs(z_s / temperature, mask)
    t_binary, t_others = _split_log_probs(z_t / temperature, mask)
    tckd = _kl_rows(t_binary, s_binary).mean()
    nckd = _kl_rows(t_others, s_others).mean()
    return temperature**2 * (alpha * tckd + beta * nckd)


def warmup_factor(epoch: int, warmup_epochs: float) -> float:
    """``min(epoch / warmup_epochs, 1)`` for a 1-based ``epoch`` (1 when there is no warm-up)."""
    return 1.0 if warmup_epochs <= 0 else min(epoch / warmup_epochs, 1.0)


@dataclass
class DKDConfig(DistillerConfig):
    """Options of DKD."""

    ce_weight: float = option(1.0, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(1.0, "overall weight of the DKD term (alpha, beta weight its parts)", min=0.0)
    alpha: float = option(1.0, "weight of the target-class term TCKD", min=0.0)
    beta: float = option(8.0, "weight of the non-target-class term NCKD", min=0.0)
    tau: float = option(4.0, "distillation temperature T", min=0.0, exclusive_min=True)
    warmup_epochs: float | None = option(
        None, "epochs over which the DKD weight ramps linearly to 1 (default: epochs / 12; 0 = none)", min=0.0
    )
    standardize: bool = option(False, "z-score the logits first (logit standardisation, Sun et al. 2024)")


@register_distiller("dkd")
class DKD(Distiller):
    """Decoupled KD: separately weighted target-class and non-target-class KL terms, warmed up linearly."""

    config_class = DKDConfig
    source = "Zhao et al., CVPR 2022 (megvii-research/mdistiller)"
    pair_source = (
        "megvii-research/mdistiller configs/cifar100/dkd/*.yaml @ a08d46f (BETA; unset = the default 8)"
    )
    pair_defaults = pair_table(
        {
            ("resnet110", "resnet32"): {"beta": 2.0},
            ("resnet32x4", "resnet8x4"): {"beta": 8.0},
            ("resnet32x4", "shufflenetv1"): {"beta": 8.0},
            ("resnet32x4", "shufflenetv2"): {"beta": 8.0},
            ("resnet50", "mobilenetv2"): {"beta": 8.0},
            ("resnet56", "resnet20"): {"beta": 2.0},
            ("vgg13", "mobilenetv2"): {"beta": 6.0},
            ("vgg13", "vgg8"): {"beta": 6.0},
            ("wrn_40_2", "shufflenetv1"): {"beta": 8.0},
            ("wrn_40_2", "wrn_16_2"): {"beta": 6.0},
            ("wrn_40_2", "wrn_40_1"): {"beta": 6.0},
        }
    )

    warmup_fraction = WARMUP_FRACTION

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = dkd_loss(
            step.student_logits,
            step.teacher_logits,
            step.labels,
            cfg.alpha,
            cfg.beta,
            cfg.tau,
            standardize=cfg.standardize,
        )
        ramp = self.warmup_ramp()
        return {**self.ce_term(step), "kd": cfg.kd_weight * ramp * loss}
