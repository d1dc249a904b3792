"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with Probabilistic
Knowledge Transfer", ECCV 2018).

Within a batch, the cosine similarities of the embeddings, mapped to ``[0, 1]`` and normalised per row,
are conditional probabilities ``p(j | i)``; the loss is the KL divergence from the teacher's to the
student's, averaged over the ``B x B`` entries (as the authors' and RepDistiller's code do):

    K_ij = (1 + cos(x_i, x_j)) / 2,    p_ij = K_ij / sum_j K_ij,
    L_PKT = 1/B^2 sum_{i,j} p^t_ij log((p^t_ij + eps) / (p^s_ij + eps))

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020, RepDistiller ``--distill pkt``): CE
weight 1, PKT weight (beta) 30000, on the pooled embedding (``feat[-1]``), eps = 1e-7. No projector: the
loss only compares similarities within each network, so the dimensions need not match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def _similarity_probabilities(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float().flatten(1)
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    x = torch.nan_to_num(x, nan=0.0)
    kernel = (x @ x.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


def pkt_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """KL divergence between the teacher's and the student's cosine-similarity distributions in the batch."""
    if student_emb.shape[0] != teacher_emb.shape[0]:
        raise ConfigError(
            f"PKT needs the same batch for student and teacher, got {student_emb.shape[0]} and "
            f"{teacher_emb.shape[0]} samples"
        )
    p_s = _similarity_probabilities(student_emb, eps)
    p_t = _similarity_probabilities(teacher_emb, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@dataclass
class PKTConfig(DistillerConfig):
    """Options of PKT."""

    kd_weight: float = option(30000.0, "weight (beta) of the PKT term", min=0.0)
    eps: float = option(1e-7, "epsilon of the normalisation and of the logarithm", min=0.0)
    student_layers: list[str] = option([], "student layers (names or indices); empty = the embedding (-1)")
    teacher_layers: list[str] = option([], "teacher layers (names or indices); empty = the embedding (-1)")


@register_distiller("pkt")
class PKT(FeatureDistiller):
    """Probabilistic knowledge transfer: match in-batch cosine-similarity distributions of embeddings."""

    config_class = PKTConfig
    source = "Passalis & Tefas, ECCV 2018; defaults: RepDistiller (CRD benchmark)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        total = sum(pkt_loss(s, t, self.config.eps) for s, t in self.feature_pairs(step))
        return {**self.ce_term(step), "pkt": self.config.kd_weight * total}
