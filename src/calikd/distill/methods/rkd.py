"""Relational knowledge distillation (Park et al., "Relational Knowledge Distillation", CVPR 2019).

The student matches the teacher's *relations* between the embeddings of a batch rather than the embeddings
themselves, with the Huber (smooth-L1, threshold 1) loss ``l_delta``, averaged over all entries:

* distance-wise: ``psi_D(i, j) = ||x_i - x_j|| / mu`` with ``mu`` the mean distance over pairs ``i != j``;
  ``L_D = mean_{i,j} l_delta(psi_D^s(i, j), psi_D^t(i, j))`` (the ``B x B`` matrix, zero diagonal included);
* angle-wise: ``psi_A(i, j, k) = <e_ji, e_ki>`` with ``e_ji = (x_j - x_i) / ||x_j - x_i||`` (a zero vector
  when ``j = i``); ``L_A = mean_{i,j,k} l_delta(psi_A^s, psi_A^t)`` over the ``B x B x B`` tensor;
* ``L_RKD = w_D L_D + w_A L_A``.

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020, RepDistiller ``--distill rkd``): CE weight
1, RKD weight (beta) 1, ``w_D = 25``, ``w_A = 50`` (the paper's values), on the pooled embedding
(``feat[-1]``). Both terms are invariant to scaling the embeddings (and the angle term to translating them),
so the dimensions need not match and no projector is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``(B, D) -> (B, B)`` Euclidean distances, zero diagonal; squared distances are clamped at ``eps``
    before the square root so the gradient stays finite for coincident points."""
    sq = x.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())).clamp(min=eps)
    off_diagonal = 1.0 - torch.eye(x.shape[0], device=x.device, dtype=x.dtype)
    return d2.sqrt() * off_diagonal


def _normalized_distances(x: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(x)
    b = x.shape[0]
    return d / (d.sum() / (b * (b - 1)))


def _angles(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=2)  # e[i, j] = unit vector from x_i to x_j
    return torch.bmm(e, e.transpose(1, 2))  # [i, j, k] = cosine of the angle at x_i between x_j and x_k


def _check_batch(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    if student.shape[0] != teacher.shape[0]:
        raise ConfigError(
            f"RKD needs the same batch for student and teacher, got {student.shape[0]} and "
            f"{teacher.shape[0]} samples"
        )
    if student.shape[0] < 2:
        return None  # no pairs: the relational terms are undefined, contribute nothing
    return student.float().flatten(1), teacher.float().flatten(1)


def rkd_distance_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the mean-normalised pairwise distance matrices (0 for a batch of one)."""
    pair = _check_batch(student_emb, teacher_emb)
    if pair is None:
        return student_emb.float().sum() * 0.0
    s, t = pair
    return F.smooth_l1_loss(_normalized_distances(s), _normalized_distances(t))


def rkd_angle_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the triplet angle (cosine) tensors (0 for a batch of one)."""
    pair = _check_batch(student_emb, teacher_emb)
    if pair is None:
        return student_emb.float().sum() * 0.0
    s, t = pair
    return F.smooth_l1_loss(_angles(s), _angles(t))


def rkd_loss(
    student_emb: torch.Tensor,
    teacher_emb: torch.Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> torch.Tensor:
    """``distance_weight * L_D + angle_weight * L_A``."""
    loss = distance_weight * rkd_distance_loss(student_emb, teacher_emb)
    return loss + angle_weight * rkd_angle_loss(student_emb, teacher_emb)


@dataclass
class RKDConfig(DistillerConfig):
    """Options of RKD."""

    kd_weight: float = option(1.0, "overall weight (beta) of the RKD terms", min=0.0)
    distance_weight: float = option(25.0, "weight w_D of the distance-wise term", min=0.0)
    angle_weight: float = option(50.0, "weight w_A of the angle-wise term", min=0.0)
    student_layers: list[str] = option([], "student layers (names or indices); empty = the embedding (-1)")
    teacher_layers: list[str] = option([], "teacher layers (names or indices); empty = the embedding (-1)")


@register_distiller("rkd")
class RKD(FeatureDistiller):
    """Relational KD: match normalised pairwise distances and triplet angles of the embeddings."""

    config_class = RKDConfig
    source = "Park et al., CVPR 2019; defaults: RepDistiller (CRD benchmark)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        pairs = self.feature_pairs(step)
        distance = sum(rkd_distance_loss(f_s, f_t) for f_s, f_t in pairs)
        angle = sum(rkd_angle_loss(f_s, f_t) for f_s, f_t in pairs)
        return {
            **self.ce_term(step),
            "rkd_distance": cfg.kd_weight * cfg.distance_weight * distance,
            "rkd_angle": cfg.kd_weight * cfg.angle_weight * angle,
        }
