"""Knowledge review (Chen et al., "Distilling Knowledge via Knowledge Review", CVPR 2021).

Each teacher level is taught by a *fusion* of the student's features at that level and every deeper one.
Levels are the intermediate stages plus the pooled embedding (a 1x1 map), ordered deep to shallow. An
attention-based fusion (ABF) module per level maps the student's feature by a 1x1 conv + BN to ``mid``
channels, fuses it with the residual passed down from the deeper level (upsampled, nearest), weighting the
two by per-position attention maps (a 1x1 conv on their concatenation, sigmoid), resizes the result to the
teacher's size, passes it on as the next residual and outputs it through a 3x3 conv + BN with the teacher's
channel count. The hierarchical context loss (HCL) compares each output with the teacher's feature at
full resolution and average-pooled to 4x4, 2x2 and 1x1 (those smaller than the map), with weights
1, 1/2, 1/4, 1/8 normalised to sum 1, summed over levels:

    HCL(s, t) = sum_levels [ mse(s, t) + sum_k 2^-k mse(pool_k(s), pool_k(t)) ] / (1 + sum_k 2^-k)

The loss is ramped linearly over the first ``warmup_epochs`` (mdistiller). Taps, as mdistiller: the student's
stage outputs (post-ReLU) and the teacher's *pre-ReLU* stage outputs, every intermediate stage (deepest
paired when the counts differ), plus both pooled embeddings; ``mid = min(512, student embedding width)``.

Defaults (CIFAR-100): CE weight 1, ReviewKD weight 5 (the authors' ``CIFAR-100/script/reviewKD.sh`` for
most pairs; mdistiller ``configs/cifar100/reviewkd.yaml``), warm-up 20 of 240 epochs (mdistiller
``mdistiller/engine/cfg.py``, ``CFG.REVIEWKD.WARMUP_EPOCHS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller, pair_table
from calikd.distill.methods.at import intermediate_stages
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.models import feature_stages
from calikd.utils.config import option

WARMUP_FRACTION = 20 / 240  # mdistiller's CFG.REVIEWKD.WARMUP_EPOCHS = 20 of 240
PYRAMID = (4, 2, 1)


def _as_map(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, None, None] if x.ndim == 2 else x


def hcl_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hierarchical context loss summed over levels; vectors count as 1x1 maps (see the module docstring)."""
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ConfigError(
            f"HCL pairs levels one to one, got {len(student_feats)} student and {len(teacher_feats)} teacher"
        )
    total = None
    for f_s, f_t in zip(student_feats, teacher_feats, strict=True):
        s, t = _as_map(f_s.float()), _as_map(f_t.float())
        if s.shape != t.shape:
            raise ConfigError(f"HCL compares equal shapes, got {tuple(s.shape)} and {tuple(t.shape)}")
        loss, weight, norm = F.mse_loss(s, t), 1.0, 1.0
        for size in PYRAMID:
            if size >= s.shape[2]:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
            norm += weight
        total = loss / norm if total is None else total + loss / norm
    return total


class ABF(nn.Module):
    """Attention-based fusion of one level's student feature with the residual from the deeper level."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels)
        )
        self.out = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, 1, 1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.attention = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.out[0].weight, a=1)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None, out_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output with the teacher's channels at out_size, residual for the next level)``."""
        x = self.reduce(_as_map(x))
        if self.attention is not None:
            if residual is None:
                raise ConfigError("a fusing ABF needs the residual of the deeper level")
            residual = F.interpolate(residual, x.shape[2:], mode="nearest")
            z = self.attention(torch.cat([x, residual], dim=1))
            x = x * z[:, :1] + residual * z[:, 1:]
        if tuple(x.shape[2:]) != tuple(out_size):
            x = F.interpolate(x, out_size, mode="nearest")
        return self.out(x), x


@dataclass
class ReviewKDConfig(DistillerConfig):
    """Options of ReviewKD.

    The authors' per-pair weights (``CIFAR-100/script/reviewKD.sh``): 5 for wrn_40_2 -> wrn_16_2,
    wrn_40_2 -> wrn_40_1, wrn_40_2 -> shufflenetv1, resnet32x4 -> resnet8x4 and resnet32x4 -> shufflenetv1;
    8 for resnet32x4 -> shufflenetv2; 0.6 for resnet56 -> resnet20; 1 for resnet110 -> resnet32.
    """

    kd_weight: float = option(5.0, "weight of the hierarchical context loss", min=0.0)
    warmup_epochs: float | None = option(
        None, "epochs over which the weight ramps linearly to 1 (default: epochs / 12; 0 = none)", min=0.0
    )
    max_mid_channels: int = option(512, "cap on the fusion width (mid = min(cap, student embedding))", min=1)
    student_layers: list[str] = option(
        [], "student levels, shallow to deep, the last the embedding; empty = intermediate stages + embedding"
    )
    teacher_layers: list[str] = option(
        [], "teacher levels; empty = pre-ReLU intermediate stages + the embedding"
    )


@register_distiller("reviewkd")
class ReviewKD(FeatureDistiller):
    """Knowledge review: attention-based fusion of student levels, hierarchical context loss per level."""

    config_class = ReviewKDConfig
    warmup_fraction = WARMUP_FRACTION
    source = (
        "Chen et al., CVPR 2021; defaults: authors' CIFAR-100/script/reviewKD.sh, mdistiller "
        "mdistiller/distillers/ReviewKD.py, engine/cfg.py"
    )
    pair_source = "dvlab-research/ReviewKD CIFAR-100/script/reviewKD.sh @ cede6ea (--kd-loss-weight)"
    pair_defaults = pair_table(
        {
            ("wrn_40_2", "wrn_16_2"): {"kd_weight": 5.0},
            ("wrn_40_2", "wrn_40_1"): {"kd_weight": 5.0},
            ("wrn_40_2", "shufflenetv1"): {"kd_weight": 5.0},
            ("resnet32x4", "resnet8x4"): {"kd_weight": 5.0},
            ("resnet32x4", "shufflenetv1"): {"kd_weight": 5.0},
            ("resnet32x4", "shufflenetv2"): {"kd_weight": 8.0},
            ("resnet56", "resnet20"): {"kd_weight": 0.6},
            ("resnet110", "resnet32"): {"kd_weight": 1.0},
        }
    )

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        cfg = self.config
        student, teacher = list(cfg.student_layers), list(cfg.teacher_layers)
        if student and teacher:
            return student, teacher
        s_stages, t_stages = intermediate_stages(self.student), intermediate_stages(self.teacher, preact=True)
        k = len(student or teacher) - 1 if (student or teacher) else min(len(s_stages), len(t_stages))
        s_default = [*s_stages[len(s_stages) - k :], feature_stages(self.student)[-1]]
        t_default = [*t_stages[len(t_stages) - k :], feature_stages(self.teacher)[-1]]
        return student or s_default, teacher or t_default

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s_shapes = [tuple(self.student_feature_shapes[n]) for n in self.student_layer_names]
        t_shapes = [tuple(self.teacher_feature_shapes[n]) for n in self.teacher_layer_names]
        names = (*self.student_layer_names, *self.teacher_layer_names)
        for name, shape in zip(names, s_shapes + t_shapes, strict=True):
            if len(shape) not in (1, 3):
                raise ConfigError(f"ReviewKD needs maps (C, H, W) or vectors (D,), '{name}' has {shape}")
        mid = min(self.config.max_mid_channels, s_shapes[-1][0])
        self.out_sizes = [shape[1:] if len(shape) == 3 else (1, 1) for shape in t_shapes]
        # one ABF per level, applied deepest first; the deepest (the embedding) has nothing to fuse with
        n = len(s_shapes)
        self.abfs = nn.ModuleList(ABF(s_shapes[i][0], mid, t_shapes[i][0], fuse=i < n - 1) for i in range(n))

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        pairs = self.feature_pairs(step)
        outputs: list[torch.Tensor] = []
        residual = None
        for i in reversed(range(len(pairs))):
            out, residual = self.abfs[i](pairs[i][0], residual, self.out_sizes[i])
            outputs.insert(0, out)
        loss = hcl_loss(outputs, [t for _, t in pairs])
        cfg = self.config
        ramp = self.warmup_ramp()
        return {**self.ce_term(step), "reviewkd": cfg.kd_weight * ramp * loss}
