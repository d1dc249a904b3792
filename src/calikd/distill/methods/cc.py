"""Correlation congruence (Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019).

Student and teacher embeddings are mapped by learned linear layers to ``feat_dim`` (``e_s``, ``e_t``, both
trainable, as RepDistiller's ``LinearEmbed``). Two forms of the loss:

* ``kernel="repdistiller"`` (default): the code the CC authors sent to RepDistiller, which produced the CRD
  benchmark's CIFAR-100 numbers. With ``delta = |e_s - e_t|`` and the batch in loader order,

      L = 1/(B-1) sum_{i<B-1} sum_d delta_{i,d} delta_{i+1,d}

  (the correlation of consecutive samples' embedding differences);
* ``kernel="gaussian"``: the paper's Eq. 6-8. Embeddings are L2-normalised, the batch correlation matrix is
  the Gaussian RBF kernel ``exp(-gamma ||x_i - x_j||^2) = exp(-2 gamma) exp(2 gamma <x_i, x_j>)`` with the
  second exponential replaced by its Taylor series up to ``order`` P,

      C_ij = exp(-2 gamma) sum_{p=0..P} (2 gamma)^p / p! <x_i, x_j>^p,    L = ||C_t - C_s||_F^2 / B^2.

Defaults: the CRD benchmark's CIFAR-100 recipe (RepDistiller ``scripts/run_cifar_distill.sh``: ``--distill
correlation -a 0 -b 0.02``; ``train_student.py``: ``LinearEmbed`` on ``feat[-1]`` to ``--feat_dim 128``):
CE weight 1, CC weight (beta) 0.02, no KD term, the pooled embedding. The Gaussian form's gamma 0.4 and P 2
are torchdistill's (``configs/sample/ilsvrc2012/cckd/resnet18_from_resnet50.yaml``, an ImageNet config:
the paper gives no CIFAR-100 values). A batch of one sample has no pairs and contributes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

KERNELS = ("repdistiller", "gaussian")


def _check_pair(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if student_emb.shape[0] != teacher_emb.shape[0]:
        raise ConfigError(
            f"CC needs the same batch for student and teacher, got {student_emb.shape[0]} and "
            f"{teacher_emb.shape[0]} samples"
        )
    return student_emb.float().flatten(1), teacher_emb.float().flatten(1)


def cc_repdistiller_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """``mean_i sum_d |e_s - e_t|_{i,d} |e_s - e_t|_{i+1,d}`` over consecutive samples (equal shapes)."""
    s, t = _check_pair(student_emb, teacher_emb)
    if s.shape != t.shape:
        raise ConfigError(f"CC embeddings differ in shape: {tuple(s.shape)} and {tuple(t.shape)}")
    if s.shape[0] < 2:
        return s.sum() * 0.0
    delta = (s - t).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


def gaussian_correlation(emb: torch.Tensor, gamma: float = 0.4, order: int = 2) -> torch.Tensor:
    """``(B, D) -> (B, B)``: the order-``order`` Taylor form of the Gaussian RBF kernel of the rows,
    L2-normalised first (see the module docstring)."""
    x = F.normalize(emb.float().flatten(1), p=2, dim=1)
    with torch.autocast(x.device.type, enabled=False):  # a float32 Gram matrix under mixed precision
        dot = x @ x.t()
    out = torch.ones_like(dot)
    for p in range(1, order + 1):
        out = out + (2.0 * gamma) ** p / math.factorial(p) * dot.pow(p)
    return math.exp(-2.0 * gamma) * out


def cc_gaussian_loss(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, gamma: float = 0.4, order: int = 2
) -> torch.Tensor:
    """``||C_t - C_s||_F^2 / B^2`` with ``C`` the Taylor-expanded Gaussian correlation matrices."""
    s, t = _check_pair(student_emb, teacher_emb)
    diff = gaussian_correlation(t, gamma, order) - gaussian_correlation(s, gamma, order)
    return diff.pow(2).sum() / s.shape[0] ** 2


class LinearEmbed(nn.Module):
    """Flatten, then a linear map to ``out_dim`` (RepDistiller's ``LinearEmbed``; no normalisation)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1).float())


@dataclass
class CCConfig(DistillerConfig):
    """Options of CC. The CRD benchmark uses the same values for every pair."""

    kd_weight: float = option(0.02, "weight (beta) of the correlation-congruence term", min=0.0)
    feat_dim: int = option(128, "dimension of the learned linear embeddings", min=1)
    kernel: str = option(
        "repdistiller",
        "loss form: the authors' code used by the CRD benchmark, or the paper's Gaussian-kernel matrices",
        choices=KERNELS,
    )
    gamma: float = option(0.4, "Gaussian kernel's gamma (kernel=gaussian)", min=0.0, exclusive_min=True)
    order: int = option(2, "order P of the kernel's Taylor expansion (kernel=gaussian)", min=1)
    student_layers: list[str] = option([], "student layer (name or index); empty = the embedding (-1)")
    teacher_layers: list[str] = option([], "teacher layer (name or index); empty = the embedding (-1)")


@register_distiller("cc")
class CC(FeatureDistiller):
    """Correlation congruence: match sample correlations of learned linear embeddings."""

    config_class = CCConfig
    single_pair = True
    source = (
        "Peng et al., ICCV 2019; defaults: RepDistiller scripts/run_cifar_distill.sh (-b 0.02), "
        "distiller_zoo/CC.py"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s_dim = math.prod(self.student_feature_shapes[self.student_layer_names[0]])
        t_dim = math.prod(self.teacher_feature_shapes[self.teacher_layer_names[0]])
        self.embed_student = LinearEmbed(s_dim, self.config.feat_dim)
        self.embed_teacher = LinearEmbed(t_dim, self.config.feat_dim)

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        (f_s, f_t) = self.feature_pairs(step)[0]
        e_s, e_t = self.embed_student(f_s), self.embed_teacher(f_t)
        if cfg.kernel == "gaussian":
            loss = cc_gaussian_loss(e_s, e_t, cfg.gamma, cfg.order)
        else:
            loss = cc_repdistiller_loss(e_s, e_t)
        return {**self.ce_term(step), "cc": cfg.kd_weight * loss}
