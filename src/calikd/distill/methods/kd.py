"""Hinton et al. (2015) knowledge distillation, with the teacher-only temperature variant and logit
standardisation as options.

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020): T = 4, CE weight 0.1, KD weight 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.functional import kl_divergence, standardize_logits
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

TEMPERATURE_ON = ("both", "teacher")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float | torch.Tensor = 4.0,
    *,
    temperature_on: str = "both",
    standardize: bool = False,
    unbiased_std: bool = True,
    reduction: str = "batchmean",
) -> torch.Tensor:
    """``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, summed over classes, mean over the batch.

    ``temperature_on="teacher"`` softens only the teacher (``KL(softmax(z_t / T) || softmax(z_s))``, the
    transformed-teacher-matching form) and drops the ``T^2`` factor, since the student's gradient is then
    not scaled by ``1/T``. ``standardize`` z-scores both logit vectors first (logit standardisation, with
    the unbiased std unless ``unbiased_std=False``). ``temperature`` may be a tensor: a learnable ``(1,)``
    or a per-sample ``(B, 1)`` temperature; each sample's KL is scaled by its own ``T^2`` before the batch
    mean (``mean(T^2 * KL)``). ``reduction="none"`` returns the per-sample values ``(B,)``.
    """
    if reduction not in ("batchmean", "none"):
        raise ConfigError(f"reduction must be 'batchmean' or 'none', got {reduction!r}")
    if temperature_on not in TEMPERATURE_ON:
        raise ConfigError(f"temperature_on must be one of {TEMPERATURE_ON}, got {temperature_on!r}")
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ConfigError(f"the distillation temperature must be positive, got {temperature}")
    z_s, z_t = student_logits.float(), teacher_logits.float()
    if z_s.shape != z_t.shape:
        raise ConfigError(
            f"student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} differ in shape: "
            "do the student and the teacher have the same number of classes?"
        )
    if standardize:
        z_s = standardize_logits(z_s, unbiased=unbiased_std)
        z_t = standardize_logits(z_t, unbiased=unbiased_std)
    t_student = temperature if temperature_on == "both" else 1.0
    log_p_t = F.log_softmax(z_t / temperature, dim=1)
    log_p_s = F.log_softmax(z_s / t_student, dim=1)
    loss = kl_divergence(log_p_t, log_p_s, reduction="none")
    if temperature_on == "both":
        scale = temperature**2
        loss = loss * (scale.reshape(-1) if isinstance(scale, torch.Tensor) else scale)
    return loss if reduction == "none" else loss.mean()


@dataclass
class KDConfig(DistillerConfig):
    """Options of Hinton KD."""

    ce_weight: float = option(0.1, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(0.9, "weight of the KL term", min=0.0)
    tau: float = option(4.0, "distillation temperature tau", min=0.0, exclusive_min=True)
    temperature_on: str = option(
        "both", "soften both distributions (with T^2 scaling) or only the teacher's", choices=TEMPERATURE_ON
    )
    standardize: bool = option(False, "z-score the logits first (logit standardisation, Sun et al. 2024)")


@register_distiller("kd")
class KD(Distiller):
    """Hinton KD: cross-entropy plus the KL divergence between temperature-softened outputs."""

    config_class = KDConfig
    source = "Hinton et al. 2015; defaults: CRD benchmark (Tian et al., ICLR 2020)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = kd_loss(
            step.student_logits,
            step.teacher_logits,
            cfg.tau,
            temperature_on=cfg.temperature_on,
            standardize=cfg.standardize,
        )
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
