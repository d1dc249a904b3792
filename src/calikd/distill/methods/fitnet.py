"""FitNets hints (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015).

A learned regressor ``r`` maps the student's hint-layer output into the teacher's guided-layer space and the
loss is their mean squared error:

    L_hint = mean_{b, c, h, w} (r(F_s) - F_t)^2

Defaults: the CRD benchmark's CIFAR-100 recipe (Tian et al. 2020, RepDistiller ``--distill hint``): CE
weight 1, hint weight (beta) 100, hint layer 2 (RepDistiller's ``feat[2]``: the output of the second stage
after the stem), trained in one stage together with the cross-entropy (no separate hint pre-training).

The regressor follows RepDistiller's ``ConvReg`` for equal spatial sizes: a 1x1 convolution to the
teacher's channels, batch norm and ReLU (a linear layer instead of the convolution for vector features).
When the sizes differ (cross-resolution distillation, or stages of different strides), the larger map is
adaptively average-pooled to the smaller size first; RepDistiller instead learns a strided / transposed
convolution for 2x ratios and fails on other ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.methods.at import intermediate_stages, pool_to_common_size
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def fitnet_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the (already regressed) student hint and the teacher's feature."""
    s, t = student_feat.float(), teacher_feat.float()
    if s.shape != t.shape:
        raise ConfigError(
            f"the regressed student feature {tuple(s.shape)} and the teacher feature {tuple(t.shape)} "
            "differ in shape"
        )
    return (s - t).pow(2).mean()


class HintRegressor(nn.Module):
    """Student hint -> teacher feature space: 1x1 conv (or linear) - batch norm - optional ReLU.

    ``forward(student_feat, teacher_feat)`` first pools the larger of two feature maps to the smaller size,
    then returns ``(regressed student feature, teacher feature)`` of equal shapes.
    """

    def __init__(
        self, student_shape: Sequence[int], teacher_shape: Sequence[int], *, relu: bool = True
    ) -> None:
        super().__init__()
        s_shape, t_shape = tuple(student_shape), tuple(teacher_shape)
        if len(s_shape) == 3 and len(t_shape) == 3:
            layers: list[nn.Module] = [nn.Conv2d(s_shape[0], t_shape[0], 1), nn.BatchNorm2d(t_shape[0])]
        elif len(s_shape) == 1 and len(t_shape) == 1:
            layers = [nn.Linear(s_shape[0], t_shape[0]), nn.BatchNorm1d(t_shape[0])]
        else:
            raise ConfigError(
                f"FitNet pairs a student feature of shape {s_shape} with a teacher feature of shape "
                f"{t_shape}: both must be feature maps (C, H, W) or both vectors (D,)"
            )
        if relu:
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(
        self, student_feat: torch.Tensor, teacher_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        student_feat, teacher_feat = pool_to_common_size(student_feat, teacher_feat)
        return self.net(student_feat), teacher_feat


@dataclass
class FitNetConfig(DistillerConfig):
    """Options of FitNet."""

    kd_weight: float = option(100.0, "weight (beta) of the hint MSE term", min=0.0)
    regressor_relu: bool = option(
        True, "end the regressor with a ReLU (as RepDistiller; turn off for pre-activation teacher features)"
    )
    student_layers: list[str] = option(
        [], "student hint layers (names or indices); empty = the second intermediate stage (RepDistiller's 2)"
    )
    teacher_layers: list[str] = option(
        [], "teacher guided layers (names or indices); empty = the second intermediate stage"
    )


def _hint_stage(model: nn.Module) -> list[str]:
    stages = intermediate_stages(model)
    if not stages:
        raise ConfigError(
            f"{type(model).__name__} has no intermediate stage to use as a FitNet hint",
            hint="set student_layers / teacher_layers",
        )
    return [stages[min(1, len(stages) - 1)]]


@register_distiller("fitnet")
class FitNet(FeatureDistiller):
    """FitNets: regress an intermediate student feature onto the teacher's with an MSE hint loss."""

    config_class = FitNetConfig
    source = "Romero et al., ICLR 2015; defaults: RepDistiller train_student.py (CRD benchmark)"

    def default_feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        return _hint_stage(self.student), _hint_stage(self.teacher)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s_names, t_names = self.student_layer_names, self.teacher_layer_names
        self.regressors = nn.ModuleList(
            HintRegressor(
                self.student_feature_shapes[s],
                self.teacher_feature_shapes[t],
                relu=self.config.regressor_relu,
            )
            for s, t in zip(s_names, t_names, strict=True)
        )

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        total = sum(
            fitnet_loss(*regressor(f_s, f_t))
            for regressor, (f_s, f_t) in zip(self.regressors, self.feature_pairs(step), strict=True)
        )
        return {**self.ce_term(step), "fitnet": self.config.kd_weight * total}
