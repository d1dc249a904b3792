"""CIFAR MobileNetV2 as in the CRD/RepDistiller benchmark (from "Route Constrained Optimization").

A stride-2 3x3 stem (32 channels x ``width_mult``), seven groups of inverted residual blocks (expansion
``expand_ratio``; channels 16, 24, 32, 64, 96, 160, 320 x ``width_mult``; strides 1, 1, 2, 2, 1, 2, 1),
a 1x1 head conv to 1280 channels (``1280 * width_mult`` when ``width_mult > 1``), global average pool, ``fc``.
``mobilenetv2_half`` is RepDistiller's ``mobile_half`` (``width_mult=0.5``).

Feature taps (``feature_stage_names``, as RepDistiller's): ``stem`` (post-ReLU), ``blocks.1``, ``blocks.2``,
``blocks.4``, ``blocks.6`` (outputs of block groups 2, 3, 5, 7: linear bottlenecks, so already pre-ReLU)
and ``pool`` (the embedding fed to ``fc``).
"""

from __future__ import annotations

import torch
from torch import nn

from calikd.models._common import check_float, check_int, embedding_pool, init_weights
from calikd.models.registry import register_alias, register_model

__all__ = ["InvertedResidual", "MobileNetV2"]

_FAMILY = "mobilenetv2"

# (expand?, channels, blocks, stride); expand=False means expansion 1 (the first group)
_SETTINGS = (
    (False, 16, 1, 1),
    (True, 24, 2, 1),
    (True, 32, 3, 2),
    (True, 64, 4, 2),
    (True, 96, 3, 1),
    (True, 160, 3, 2),
    (True, 320, 1, 1),
)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN (+ identity when shapes match)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            *_conv_bn(in_channels, hidden, 1),
            nn.ReLU(),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU(),
            *_conv_bn(hidden, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """RepDistiller's CIFAR MobileNetV2 with width multiplier ``width_mult``."""

    feature_stage_names: tuple[str, ...] = ("stem", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "pool")
    preact_stage_names = feature_stage_names  # linear bottlenecks: no ReLU after the block outputs

    def __init__(
        self, num_classes: int, in_channels: int = 3, width_mult: float = 1.0, expand_ratio: int = 6
    ) -> None:
        super().__init__()
        width_mult = check_float("width_mult", width_mult, 0.01, 16.0, high_inclusive=True)
        check_int("expand_ratio", expand_ratio)
        ch = max(1, int(32 * width_mult))
        self.stem = nn.Sequential(*_conv_bn(in_channels, ch, 3, 2), nn.ReLU())
        groups = []
        for expand, c, n, s in _SETTINGS:
            out = max(1, int(c * width_mult))
            t = expand_ratio if expand else 1
            blocks = [InvertedResidual(ch, out, s, t)]
            blocks += [InvertedResidual(out, out, 1, t) for _ in range(n - 1)]
            groups.append(nn.Sequential(*blocks))
            ch = out
        self.blocks = nn.Sequential(*groups)
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.head = nn.Sequential(*_conv_bn(ch, last, 1), nn.ReLU())
        self.pool = embedding_pool()
        self.fc = nn.Linear(last, num_classes)
        init_weights(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.head(self.blocks(self.stem(x)))))


@register_model("mobilenetv2", family=_FAMILY, description="CIFAR MobileNetV2 (RepDistiller), width_mult")
def mobilenetv2(
    num_classes: int, in_channels: int = 3, *, width_mult: float = 1.0, expand_ratio: int = 6
) -> MobileNetV2:
    """CIFAR MobileNetV2; see :class:`MobileNetV2`."""
    return MobileNetV2(num_classes, in_channels, width_mult, expand_ratio)


register_alias(
    "mobilenetv2_half",
    "mobilenetv2",
    description="CIFAR MobileNetV2 with width_mult=0.5 (RepDistiller's mobile_half)",
    width_mult=0.5,
)
