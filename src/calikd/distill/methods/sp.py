"""Similarity-preserving distillation (Tung & Mori, "Similarity-Preserving Knowledge Distillation",
ICCV 2019).

Each network's activations of a batch, flattened to ``Q (B, C*H*W)``, give a ``B x B`` Gram matrix whose
rows are L2-normalised; the loss is the squared Frobenius distance between the student's and the teacher's,
divided by ``B^2``:

    G = row_normalize(Q Q^T),    L_SP = ||G_t - G_s||_F^2 / B^2

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020, RepDistiller ``--distill similarity``):
CE weight 1, SP weight (beta) 3000, on the last feature map before pooling (``feat[-2]``). The Gram matrices
are ``B x B`` whatever the feature shapes, so no projector or resizing is needed (cross-resolution works).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B, B)``: the Gram matrix of the flattened activations, each row L2-normalised."""
    q = x.float().flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


def sp_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """``||G_t - G_s||_F^2 / B^2`` with ``G`` the row-normalised batch similarity matrices."""
    b = student_feat.shape[0]
    if teacher_feat.shape[0] != b:
        raise ConfigError(
            f"SP needs the same batch for student and teacher, got {b} and {teacher_feat.shape[0]} samples"
        )
    diff = similarity_matrix(teacher_feat) - similarity_matrix(student_feat)
    return diff.pow(2).sum() / (b * b)


@dataclass
class SPConfig(DistillerConfig):
    """Options of similarity-preserving distillation."""

    kd_weight: float = option(3000.0, "weight (beta) of the similarity-preserving term", min=0.0)
    student_layers: list[str] = option(
        [], "student layers (names or indices); empty = the last feature map before pooling (-2)"
    )
    teacher_layers: list[str] = option(
        [], "teacher layers (names or indices); empty = the last feature map before pooling (-2)"
    )


@register_distiller("sp")
class SP(FeatureDistiller):
    """Similarity-preserving KD: match the row-normalised batch similarity matrices of a feature map."""

    config_class = SPConfig
    source = "Tung & Mori, ICCV 2019; defaults: RepDistiller (CRD benchmark)"
    default_layer = "-2"  # the last feature map before pooling

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        total = sum(sp_loss(s, t) for s, t in self.feature_pairs(step))
        return {**self.ce_term(step), "sp": self.config.kd_weight * total}
