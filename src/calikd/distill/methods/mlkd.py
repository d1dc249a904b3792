"""Multi-level logit distillation (MLKD; Jin, Wang & Lin, CVPR 2023): the student's predictions are aligned
with the teacher's at the instance, batch and class level, each at several temperatures.

With ``P = softmax(Z / T)`` the ``(B, C)`` predictions of a batch at temperature ``T``::

    instance(T) = T^2 * KL(P_t || P_s)                 summed over classes, mean over the batch
    batch(T)    = ||P_t P_t^T - P_s P_s^T||_F^2 / B    (B x B) sample-similarity matrices
    class(T)    = ||P_t^T P_t - P_s^T P_s||_F^2 / C    (C x C) class-correlation matrices
    MLKD        = sum over T in temperatures of instance + batch + class

(the "prediction augmentation" is the set of temperatures, 2..6 in the authors' code). The batch and class
terms are not normalised by the batch size, so they grow with its square and, for the class term, with
fewer classes: the authors' setting is batch 64 and 100 classes. With larger batches (AugMix's three views
triple it) or few classes, lower ``kd_weight`` or the learning rate, or clip the gradients.

Strong augmentation: the authors feed every image twice, weakly and strongly augmented, and apply the
losses to both views. calikd leaves augmentation to its KD-augment module, so one batch gets the losses:
``--kd-augment augmix --augmix-js`` gives a clean and two strongly augmented views of every image in one
batch (all three get the losses), and any other ``--kd-augment`` works too. The authors' code also
multiplies the already batch-averaged weak-view terms by a median-confidence mask and averages it, which
scales them by a constant ~1/2 (the fraction of samples at or below the median confidence); calikd omits
that constant (use ``kd_weight`` to rescale).

Defaults: ``Jin-Ying/Multi-Level-Logit-Distillation`` (``mdistiller/distillers/KD_ours.py``, temperatures
``{T, 3, 5, 2, 6}`` with ``CFG.KD.TEMPERATURE = 4``; ``mdistiller/engine/cfg.py``: CE weight 0.1, KD weight
0.9 on every term); their CIFAR-100 solver (``configs/cifar100/ours/res32x4_res8x4.yaml``) uses LR 0.025,
240 epochs, batch 64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.functional import kl_divergence
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def mlkd_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperatures: Sequence[float] = (2.0, 3.0, 4.0, 5.0, 6.0),
) -> dict[str, torch.Tensor]:
    """``{"instance", "batch", "class"}``: each level's loss summed over ``temperatures``."""
    z_s, z_t = student_logits.float(), teacher_logits.float()
    if z_s.shape != z_t.shape or z_s.ndim != 2:
        raise ConfigError(
            f"student logits {tuple(z_s.shape)} and teacher logits {tuple(z_t.shape)} must be equal (B, C)"
        )
    if not temperatures or any(t <= 0 for t in temperatures):
        raise ConfigError(f"MLKD needs one or more positive temperatures, got {list(temperatures)}")
    batch, classes = z_s.shape
    out = {"instance": z_s.new_zeros(()), "batch": z_s.new_zeros(()), "class": z_s.new_zeros(())}
    for t in temperatures:
        log_p_s, log_p_t = F.log_softmax(z_s / t, dim=1), F.log_softmax(z_t / t, dim=1)
        p_s, p_t = log_p_s.exp(), log_p_t.exp()
        out["instance"] = out["instance"] + t * t * kl_divergence(log_p_t, log_p_s)
        out["batch"] = out["batch"] + (p_t @ p_t.T - p_s @ p_s.T).pow(2).sum() / batch
        out["class"] = out["class"] + (p_t.T @ p_t - p_s.T @ p_s).pow(2).sum() / classes
    return out


@dataclass
class MLKDConfig(DistillerConfig):
    """Options of MLKD. The authors use the same temperatures and weights for every CIFAR-100 pair; their
    per-pair configs (``configs/cifar100/ours/*.yaml``) change only the solver."""

    ce_weight: float = option(0.1, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(0.9, "weight of each alignment level (instance, batch, class)", min=0.0)
    temperatures: list[float] = option(
        [2.0, 3.0, 4.0, 5.0, 6.0], "temperatures of the prediction augmentation", min=0.0, exclusive_min=True
    )


@register_distiller("mlkd")
class MLKD(Distiller):
    """Multi-level logit distillation: instance, batch and class alignment over several temperatures."""

    config_class = MLKDConfig
    source = "Jin et al., CVPR 2023 (Jin-Ying/Multi-Level-Logit-Distillation)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        levels = mlkd_losses(step.student_logits, step.teacher_logits, cfg.temperatures)
        return {
            **self.ce_term(step),
            "kd": cfg.kd_weight * levels["instance"],
            "batch": cfg.kd_weight * levels["batch"],
            "class": cfg.kd_weight * levels["class"],
        }
