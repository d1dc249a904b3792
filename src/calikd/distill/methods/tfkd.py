"""Teacher-free KD with a virtual teacher (Tf-KD_reg; Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge
Distillation via Label Smoothing Regularization", CVPR 2020).

KD is a learned label smoothing, so a hand-made "virtual teacher" can replace the real one: it puts
``a`` on the label and spreads ``1 - a`` evenly over the other ``K - 1`` classes, softened by ``T``::

    u_k = a * y_k + (1 - a) / (K - 1) * (1 - y_k)       y = one-hot label or mixed label distribution
    p_v = softmax(u / T)
    TF-KD = KL(p_v || softmax(z_s))                      summed over classes, mean over the batch

As in the authors' code (``my_loss_function.py``, ``loss_kd_regularization``) the temperature acts on the
virtual distribution ``u`` itself and the student's output is not softened; with ``a = 0.99`` and
``T = 20`` the virtual teacher is close to uniform, a confidence penalty like label smoothing. No teacher
network is needed. The self-training variant (Tf-KD_self: a trained copy of the student as teacher) is
plain ``kd`` with such a teacher; the authors' ResNet18 setting there (``alpha 0.95, T 6, multiplier 50``)
is ``--method kd --tau 6 --ce-weight 0.05 --kd-weight 0.475`` on CIFAR-100.

Defaults: the authors' CIFAR-100 ResNet18 setting (``experiments/base_experiments/base_resnet18/
params.json``: ``reg_alpha 0.1, reg_temperature 20, multiplier 100``, ``a = 0.99`` in the loss). Their
total is ``(1 - alpha) CE + alpha * multiplier * KLDivLoss()``, where ``KLDivLoss()`` averages over the
``B x K`` entries, i.e. ``KL / K``; so CE weight ``1 - alpha = 0.9`` and KD weight
``alpha * multiplier / K = 0.1`` on this per-sample KL (K = 100).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.functional import kl_divergence
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def virtual_teacher(target: torch.Tensor, num_classes: int, correct_prob: float = 0.99) -> torch.Tensor:
    """``u = a y + (1 - a) / (K - 1) (1 - y)`` ``(B, K)`` for labels ``(B,)`` or distributions ``(B, K)``."""
    if num_classes < 2:
        raise ConfigError("TF-KD needs at least two classes")
    y = F.one_hot(target.long(), num_classes).float() if target.ndim == 1 else target.float()
    if y.shape[1] != num_classes:
        raise ConfigError(f"soft targets of shape {tuple(y.shape)} do not match {num_classes} classes")
    return correct_prob * y + (1.0 - correct_prob) / (num_classes - 1) * (1.0 - y)


def tfkd_loss(
    student_logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 20.0,
    correct_prob: float = 0.99,
) -> torch.Tensor:
    """``KL(softmax(u / T) || softmax(z_s))`` with the virtual teacher ``u``, mean over the batch."""
    if temperature <= 0:
        raise ConfigError(f"the virtual teacher's temperature must be positive, got {temperature}")
    z_s = student_logits.float()
    log_p_v = F.log_softmax(virtual_teacher(target, z_s.shape[1], correct_prob) / temperature, dim=1)
    return kl_divergence(log_p_v, F.log_softmax(z_s, dim=1))


@dataclass
class TFKDConfig(DistillerConfig):
    """Options of teacher-free KD (virtual teacher). The authors' per-model CIFAR-100 settings
    (``reg_alpha, reg_temperature, multiplier`` -> CE weight ``1 - alpha``, KD weight
    ``alpha * multiplier / 100``): ResNet18 0.1, 20, 100 (CE 0.9, KD 0.1); GoogLeNet 0.1, 40, 50 (0.9, 0.05);
    MobileNetV2 0.95, 40, 1 (0.05, 0.0095); ShuffleNetV2 0.95, 10, 1 (0.05, 0.0095)."""

    ce_weight: float = option(0.9, "weight of the cross-entropy with the labels (1 - alpha)", min=0.0)
    kd_weight: float = option(
        0.1, "weight of the KL to the virtual teacher (alpha * multiplier / K)", min=0.0
    )
    tau: float = option(
        20.0, "temperature T of the virtual teacher's distribution", min=0.0, exclusive_min=True
    )
    correct_prob: float = option(
        0.99, "probability a the virtual teacher puts on the label", min=0.0, max=1.0, exclusive_min=True
    )


@register_distiller("tfkd")
class TFKD(Distiller):
    """Teacher-free KD: a hand-made virtual teacher (a softened label distribution) replaces the teacher."""

    config_class = TFKDConfig
    needs_teacher = False
    source = "Yuan et al., CVPR 2020 (yuanli2333/Teacher-free-Knowledge-Distillation)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        loss = tfkd_loss(step.student_logits, step.target, cfg.tau, cfg.correct_prob)
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
