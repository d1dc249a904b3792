"""Curriculum temperature KD (CTKD; Li et al., "Curriculum Temperature for Knowledge Distillation",
AAAI 2023), with the global (one scalar) temperature.

The distillation temperature is learnt, adversarially: one scalar parameter ``theta`` gives

    T = T_min + T_span * sigmoid(theta)                    (official code: 1 + 20 * sigmoid(theta))

and reaches the KD loss through a gradient reversal layer of strength ``lambda``, so the student minimises
``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` while the temperature *maximises* it (the hardest
temperature for the student). ``lambda`` follows a cosine curriculum over the epochs ``e`` (1-based)::

    lambda(e) = lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * min(e / E, 1))) / 2

rising from ``lambda_min`` to ``lambda_max`` over the first ``E`` epochs, so the task gets harder as the
student gets better. ``theta`` is a parameter of the distiller (optimised with the student, saved by
:meth:`~calikd.distill.base.Distiller.extra_state`).

Defaults: ``zhengli97/CTKD`` (``scripts/run_cifar_distill.sh``, ``train_student.py``,
``models/temp_global.py``) for CIFAR-100: CE weight 0.1, KD weight 0.9, ``theta`` initialised to 1,
T_min 1 (``--t_start``), T_span 20 (``--t_end``), lambda from 0 to 1 (``--decay_max 0 --decay_min -1``,
a signed multiplier there) over 10 of 240 epochs (``--decay_loops 10``), which is expressed here as a
fraction of the run, ``E = epochs / 24``, when not given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.functional import gradient_reversal
from calikd.distill.methods.kd import kd_loss
from calikd.distill.registry import register_distiller
from calikd.utils.config import option

CURRICULUM_FRACTION = 10 / 240  # the official 10 curriculum epochs of 240


def ctkd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` with a tensor temperature (gradients reach it)."""
    return kd_loss(student_logits, teacher_logits, temperature)


def cosine_curriculum(epoch: float, curriculum_epochs: float, start: float = 0.0, end: float = 1.0) -> float:
    """``start + (end - start) * (1 - cos(pi * min(epoch / curriculum_epochs, 1))) / 2``.

    ``end`` throughout when ``curriculum_epochs`` is 0 (no ramp)."""
    progress = 1.0 if curriculum_epochs <= 0 else min(max(epoch, 0.0) / curriculum_epochs, 1.0)
    return start + (end - start) * (1.0 - math.cos(math.pi * progress)) / 2.0


class GlobalTemperature(nn.Module):
    """A learnable temperature ``T = t_min + t_span * sigmoid(theta)``, reached through gradient reversal."""

    def __init__(self, init: float = 1.0, t_min: float = 1.0, t_span: float = 20.0) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.full((1,), float(init)))
        self.t_min, self.t_span = float(t_min), float(t_span)

    def forward(self, reversal: float) -> torch.Tensor:
        """The temperature ``(1,)``; its gradient to ``theta`` is multiplied by ``-reversal``."""
        return self.t_min + self.t_span * torch.sigmoid(gradient_reversal(self.theta, reversal))

    def extra_repr(self) -> str:
        return f"t_min={self.t_min}, t_span={self.t_span}"


@dataclass
class CTKDConfig(DistillerConfig):
    """Options of CTKD (global temperature)."""

    ce_weight: float = option(0.1, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(0.9, "weight of the KL term at the learnt temperature", min=0.0)
    temperature_min: float = option(
        1.0, "lowest temperature T_min (T = T_min + T_span * sigmoid(theta))", min=0.0
    )
    temperature_span: float = option(
        20.0, "temperature range T_span above T_min", min=0.0, exclusive_min=True
    )
    theta_init: float = option(1.0, "initial value of the temperature parameter theta")
    lambda_min: float = option(0.0, "gradient-reversal strength at the start of the curriculum", min=0.0)
    lambda_max: float = option(1.0, "gradient-reversal strength at the end of the curriculum", min=0.0)
    curriculum_epochs: float | None = option(
        None,
        "epochs over which lambda rises (cosine) from lambda_min to lambda_max (default: epochs / 24)",
        min=0.0,
    )


@register_distiller("ctkd")
class CTKD(Distiller):
    """Curriculum temperature KD: a learnt temperature, made adversarial by a cosine-scheduled reversal."""

    config_class = CTKDConfig
    source = "Li et al., AAAI 2023 (zhengli97/CTKD)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.temperature_module = GlobalTemperature(cfg.theta_init, cfg.temperature_min, cfg.temperature_span)

    def curriculum_epochs(self) -> float:
        """The curriculum length in epochs (the configured one, else ``epochs / 24``)."""
        cfg = self.config
        if cfg.curriculum_epochs is not None:
            return cfg.curriculum_epochs
        return self.epochs * CURRICULUM_FRACTION

    def reversal_strength(self) -> float:
        """``lambda`` at the current epoch (see the module docstring)."""
        cfg = self.config
        return cosine_curriculum(self.epoch, self.curriculum_epochs(), cfg.lambda_min, cfg.lambda_max)

    def temperature(self) -> torch.Tensor:
        """The current learnt temperature ``(1,)`` (detached)."""
        return self.temperature_module(0.0).detach()

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        temperature = self.temperature_module(self.reversal_strength())
        loss = ctkd_loss(step.student_logits, step.teacher_logits, temperature)
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
