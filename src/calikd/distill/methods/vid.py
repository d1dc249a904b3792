"""Variational information distillation (Ahn et al., "Variational Information Distillation for Knowledge
Transfer", CVPR 2019).

VID maximises a variational lower bound on the mutual information between teacher and student features:
the teacher's feature ``t`` is modelled as a Gaussian whose mean ``mu(s)`` is regressed from the student's
feature by a small network (1x1 conv - ReLU - 1x1 conv - ReLU - 1x1 conv, no biases) and whose variance is
one learned value per teacher channel, ``sigma_c^2 = softplus(alpha_c) + eps``. The loss is the negative
log-likelihood without its constant, averaged over every element, summed over the tapped stages:

    L_VID = mean_{b, c, h, w} 1/2 [ (t_bchw - mu(s)_bchw)^2 / sigma_c^2 + log sigma_c^2 ]

Defaults: the CRD benchmark's CIFAR-100 recipe (RepDistiller ``scripts/run_cifar_distill.sh``: ``--distill
vid -a 0 -b 1``; ``train_student.py``: one ``VIDLoss(s, t, t)`` per stage of ``feat[1:-1]``, i.e. the
regressor's hidden width is the teacher's channel count; ``distiller_zoo/VID.py``: initial variance 5,
eps 1e-5): CE weight 1, VID weight (beta) 1, every intermediate stage, same for every pair. As in
RepDistiller, a map larger than its partner is adaptive-average-pooled to the partner's size first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.methods.at import paired_stage_defaults, pool_to_common_size
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def vid_loss(
    pred_mean: torch.Tensor, target: torch.Tensor, log_scale: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Mean Gaussian NLL (no constant) of ``target`` under mean ``pred_mean`` and per-channel variance
    ``softplus(log_scale) + eps``; channels are dimension 1."""
    mu, t = pred_mean.float(), target.float()
    if mu.shape != t.shape:
        raise ConfigError(f"VID's predicted mean {tuple(mu.shape)} and target {tuple(t.shape)} differ")
    var = F.softplus(log_scale.float()) + eps
    var = var.view(1, -1, *([1] * (mu.ndim - 2)))
    return 0.5 * ((mu - t).pow(2) / var + var.log()).mean()


def inverse_softplus(value: float) -> float:
    """``x`` with ``softplus(x) = value`` (``value > 0``)."""
    return math.log(math.expm1(value))


class VIDRegressor(nn.Module):
    """The mean network and the per-channel log-scale of one stage's Gaussian."""

    def __init__(
        self, in_channels: int, mid_channels: int, out_channels: int, init_var: float, eps: float
    ) -> None:
        super().__init__()
        self.mean = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, 1, bias=False),
        )
        self.log_scale = nn.Parameter(torch.full((out_channels,), inverse_softplus(init_var - eps)))
        self.eps = eps

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        s, t = pool_to_common_size(student_feat, teacher_feat)
        return vid_loss(self.mean(s), t, self.log_scale, self.eps)


@dataclass
class VIDConfig(DistillerConfig):
    """Options of VID. The CRD benchmark uses the same values for every pair."""

    kd_weight: float = option(1.0, "weight (beta) of the VID term", min=0.0)
    init_var: float = option(5.0, "initial variance of every teacher channel", min=0.0, exclusive_min=True)
    eps: float = option(1e-5, "floor added to the variance", min=0.0, exclusive_min=True)
    student_layers: list[str] = option(
        [], "student stages (names or indices); empty = every intermediate stage (no stem, no embedding)"
    )
    teacher_layers: list[str] = option(
        [], "teacher stages (names or indices); empty = every intermediate stage (no stem, no embedding)"
    )


@register_distiller("vid")
class VID(FeatureDistiller):
    """Variational information distillation: Gaussian likelihood of teacher features given the student's."""

    config_class = VIDConfig
    source = (
        "Ahn et al., CVPR 2019; defaults: RepDistiller scripts/run_cifar_distill.sh (-b 1), "
        "distiller_zoo/VID.py"
    )

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        return paired_stage_defaults(
            self.student, self.teacher, self.config.student_layers, self.config.teacher_layers
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        if cfg.init_var <= cfg.eps:
            raise ConfigError(f"VID's init_var ({cfg.init_var}) must exceed eps ({cfg.eps})")
        regressors = []
        for s, t in zip(self.student_layer_names, self.teacher_layer_names, strict=True):
            s_shape, t_shape = self.student_feature_shapes[s], self.teacher_feature_shapes[t]
            if len(s_shape) != 3 or len(t_shape) != 3:
                raise ConfigError(
                    f"VID needs feature maps (C, H, W), got {tuple(s_shape)} ('{s}') and "
                    f"{tuple(t_shape)} ('{t}')",
                    hint="tap convolutional stages, not the pooled embedding",
                )
            regressors.append(VIDRegressor(s_shape[0], t_shape[0], t_shape[0], cfg.init_var, cfg.eps))
        self.regressors = nn.ModuleList(regressors)

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        total = sum(r(s, t) for r, (s, t) in zip(self.regressors, self.feature_pairs(step), strict=True))
        return {**self.ce_term(step), "vid": self.config.kd_weight * total}
