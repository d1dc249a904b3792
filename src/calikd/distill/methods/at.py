"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017).

Each feature map ``A (B, C, H, W)`` becomes a spatial attention map: the channel mean of ``|A|^p``,
flattened and L2-normalised per sample. The loss is the mean squared difference between the student's and
the teacher's maps, summed over the tapped stages:

    at(A) = normalize(mean_c |A_c|^p),    L_AT = sum_stages mean_{b, hw} (at(A_s) - at(A_t))^2

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020, RepDistiller ``--distill attention``):
CE weight 1, AT weight (beta) 1000, p = 2, every intermediate stage (RepDistiller's ``feat[1:-1]``: the
stage outputs, neither the stem nor the pooled embedding). As in RepDistiller, a map larger than its
partner is adaptively average-pooled to the partner's size first (cross-resolution distillation).
When the student and the teacher have different numbers of stages, the deepest ones are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.models import feature_stages, preact_feature_stages
from calikd.utils.config import option


def intermediate_stages(model: nn.Module, *, preact: bool = False) -> tuple[str, ...]:
    """The model's feature stages without the pooled embedding (the last) and without a ``stem``.

    These are RepDistiller's ``feat[1:-1]`` for models with a stem; models without one (calikd's plain
    ``cnn``, the ``mlp``) keep their first stage. ``preact=True``: the pre-ReLU taps of the same stages
    (:func:`calikd.models.preact_feature_stages`).
    """
    stages = list(preact_feature_stages(model) if preact else feature_stages(model))[:-1]
    if stages and stages[0].rsplit(".", 1)[-1] == "stem":
        stages = stages[1:]
    return tuple(stages)


def paired_stage_defaults(
    student: nn.Module,
    teacher: nn.Module,
    student_layers: Sequence[str],
    teacher_layers: Sequence[str],
    *,
    preact: bool = False,
) -> tuple[list[str], list[str]]:
    """Layer specs pairing intermediate stages, deepest first, where the user gave none.

    Empty ``student_layers`` / ``teacher_layers`` become the deepest intermediate stages of that model, as
    many as the other side has (the user's list, or the other model's intermediate stages); ``preact``
    takes their pre-ReLU taps.
    """
    student_layers, teacher_layers = list(student_layers), list(teacher_layers)
    if student_layers and teacher_layers:
        return student_layers, teacher_layers
    s_default = intermediate_stages(student, preact=preact)
    t_default = intermediate_stages(teacher, preact=preact)
    k = len(student_layers or teacher_layers) or min(len(s_default), len(t_default))
    return (
        student_layers or list(s_default[-k:] if k else ()),
        teacher_layers or list(t_default[-k:] if k else ()),
    )


def pool_to_common_size(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool whichever map is larger (per spatial dim) to the smaller size of the two."""
    if student_feat.ndim != 4 or teacher_feat.ndim != 4:
        return student_feat, teacher_feat
    size = (
        min(student_feat.shape[2], teacher_feat.shape[2]),
        min(student_feat.shape[3], teacher_feat.shape[3]),
    )
    if tuple(student_feat.shape[2:]) != size:
        student_feat = F.adaptive_avg_pool2d(student_feat, size)
    if tuple(teacher_feat.shape[2:]) != size:
        teacher_feat = F.adaptive_avg_pool2d(teacher_feat, size)
    return student_feat, teacher_feat


def attention_map(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, prod(spatial))``: channel mean of ``|x|^p``, L2-normalised per sample.

    (For ``p = 2`` this equals RepDistiller's ``x.pow(2).mean(1)``; the absolute value makes odd ``p``
    follow the paper's ``sum_c |A_c|^p``.)
    """
    if x.ndim < 3:
        raise ConfigError(
            f"attention transfer needs feature maps (B, C, H, W), got shape {tuple(x.shape)}: "
            "tap convolutional stages, not the pooled embedding"
        )
    a = x.float().abs().pow(p).mean(1).flatten(1)
    return F.normalize(a, p=2, dim=1)


def at_loss(
    student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor], p: float = 2.0
) -> torch.Tensor:
    """Sum over paired stages of ``mean((at(s) - at(t))^2)``; larger maps are pooled to the smaller size."""
    if len(student_feats) != len(teacher_feats):
        raise ConfigError(
            f"attention transfer pairs stages one to one: got {len(student_feats)} student and "
            f"{len(teacher_feats)} teacher feature maps"
        )
    if not student_feats:
        raise ConfigError("attention transfer needs at least one pair of feature maps")
    total = None
    for f_s, f_t in zip(student_feats, teacher_feats, strict=True):
        f_s, f_t = pool_to_common_size(f_s.float(), f_t.float())
        term = (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()
        total = term if total is None else total + term
    return total


@dataclass
class ATConfig(DistillerConfig):
    """Options of attention transfer."""

    kd_weight: float = option(1000.0, "weight (beta) of the attention-transfer term", min=0.0)
    p: float = option(2.0, "exponent p of the attention map mean_c |A|^p", min=0.0, exclusive_min=True)
    student_layers: list[str] = option(
        [], "student stages (names or indices); empty = every intermediate stage (no stem, no embedding)"
    )
    teacher_layers: list[str] = option(
        [], "teacher stages (names or indices); empty = every intermediate stage (no stem, no embedding)"
    )


@register_distiller("at")
class AT(FeatureDistiller):
    """Attention transfer: match L2-normalised spatial attention maps of intermediate stages."""

    config_class = ATConfig
    source = "Zagoruyko & Komodakis, ICLR 2017; defaults: RepDistiller (CRD benchmark)"

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        return paired_stage_defaults(
            self.student, self.teacher, self.config.student_layers, self.config.teacher_layers
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, shape in (*self.student_feature_shapes.items(), *self.teacher_feature_shapes.items()):
            if len(shape) < 2:
                raise ConfigError(
                    f"attention transfer needs feature maps (C, H, W), but '{name}' has shape {tuple(shape)}"
                )

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        pairs = self.feature_pairs(step)
        s, t = [p[0] for p in pairs], [p[1] for p in pairs]
        return {**self.ce_term(step), "at": self.config.kd_weight * at_loss(s, t, self.config.p)}
