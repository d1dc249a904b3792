"""CIFAR ResNets (He et al. 2016, option-B shortcuts) as in the CRD/RepDistiller benchmark.

Depth ``6n+2``: a 3x3 stem, three stages of ``n`` BasicBlocks (stride 1, 2, 2), global average pool, ``fc``.
``resnet{8..110}`` use widths 16/16/32/64 (stem/stages); ``resnet8x4`` and ``resnet32x4`` use 32/64/128/256.

Feature taps (``feature_stage_names``):

* ``stem``: conv-BN-ReLU output (post-ReLU, full resolution);
* ``layer1``..``layer3``: stage outputs (post-ReLU); with ``preact_features=True`` these become
  ``layerK.{n-1}.preact``: the last block's residual sum before its final ReLU (RepDistiller's ``preact``);
* ``pool``: the pooled, flattened embedding ``(B, widths[-1])`` fed to ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from calikd.errors import ModelError
from calikd.models._common import MAX_DEPTH, check_bool, check_int, embedding_pool, init_weights
from calikd.models.registry import register_alias, register_model, register_pattern

__all__ = ["BasicBlock", "ResNet", "check_resnet_depth"]

_FAMILY = "resnet"


def check_resnet_depth(depth: int) -> None:
    """Raise :class:`ModelError` unless ``depth = 6n+2`` with ``n >= 1``."""
    check_int("ResNet depth", depth, 0, maximum=MAX_DEPTH)
    if depth < 8 or (depth - 2) % 6:
        lower = max(8, depth - (depth - 2) % 6)
        raise ModelError(
            f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}",
            hint=f"e.g. depth {lower} or {lower + 6}",
        )


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.preact = nn.Identity()  # tap point: residual sum before the final ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.preact(out + shortcut))


class ResNet(nn.Module):
    """CIFAR ResNet of depth ``6n+2`` with stem/stage widths ``widths`` (4 numbers)."""

    feature_stage_names: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        depth: int = 20,
        widths: Sequence[int] = (16, 16, 32, 64),
        preact_features: bool = False,
    ) -> None:
        super().__init__()
        check_resnet_depth(depth)
        widths = tuple(widths)
        if len(widths) != 4:
            raise ModelError(f"ResNet widths must be 4 numbers (stem, stage 1, 2, 3), got {widths!r}")
        for w in widths:
            check_int("each of widths", w)
        check_bool("preact_features", preact_features)
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.layer1 = self._make_layer(widths[0], widths[1], n, stride=1)
        self.layer2 = self._make_layer(widths[1], widths[2], n, stride=2)
        self.layer3 = self._make_layer(widths[2], widths[3], n, stride=2)
        self.pool = embedding_pool()
        self.fc = nn.Linear(widths[3], num_classes)
        self.preact_stage_names = ("stem", *(f"layer{k}.{n - 1}.preact" for k in (1, 2, 3)), "pool")
        if preact_features:
            self.feature_stage_names = self.preact_stage_names
        init_weights(self)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x))


@register_model("resnet", family=_FAMILY, description="CIFAR ResNet (BasicBlock), depth 6n+2, 4 widths")
def resnet(
    num_classes: int,
    in_channels: int = 3,
    *,
    depth: int = 20,
    widths: Sequence[int] = (16, 16, 32, 64),
    preact_features: bool = False,
) -> ResNet:
    """CIFAR ResNet; see :class:`ResNet`."""
    return ResNet(num_classes, in_channels, depth, widths, preact_features)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    register_alias(
        f"resnet{_depth}", "resnet", description=f"CIFAR ResNet-{_depth}, widths 16/16/32/64", depth=_depth
    )
for _depth in (8, 32):
    register_alias(
        f"resnet{_depth}x4",
        "resnet",
        description=f"CIFAR ResNet-{_depth}x4 (RepDistiller), widths 32/64/128/256",
        depth=_depth,
        widths=(32, 64, 128, 256),
    )


register_pattern(
    r"resnet(?P<depth>\d+)",
    "resnet",
    template="resnet{depth}",
    description="CIFAR ResNet of the given depth (6n+2), widths 16/16/32/64",
    validate=check_resnet_depth,
)
