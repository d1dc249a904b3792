"""CIFAR ShuffleNetV2 as in the CRD/RepDistiller benchmark (``ShuffleV2`` there, ``net_size=1``).

A 1x1 stem conv to 24 channels (BN, ReLU; no downsampling), three stages (a stride-2 down block, then
``num_blocks`` split/shuffle blocks), a 1x1 head conv (BN, ReLU), global average pool, ``fc``.
``net_size`` picks the channel configuration (0.2, 0.3, 0.5, 1, 1.5 or 2).

Feature taps (``feature_stage_names``): ``stem``, ``layer1``..``layer3`` (stage outputs, after the channel
shuffle), ``pool`` (the embedding fed to ``fc``). Pre-ReLU taps are not offered: in a ShuffleNetV2 block
half of the channels bypass the ReLU, so the stage outputs are already partly linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calikd.models._common import check_choice, embedding_pool, init_weights
from calikd.models.registry import register_model

__all__ = ["SHUFFLENETV2_CONFIGS", "ShuffleNetV2"]

_FAMILY = "shufflenetv2"

# net_size -> (stage output channels, head channels), blocks per stage
SHUFFLENETV2_CONFIGS: dict[float, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    0.2: ((40, 80, 160, 512), (3, 3, 3)),
    0.3: ((40, 80, 160, 512), (3, 7, 3)),
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2: ((224, 488, 976, 2048), (3, 7, 3)),
}


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class SplitBlock(nn.Module):
    """Keep half the channels, transform the other (1x1-BN-ReLU, dw3x3-BN, 1x1-BN-ReLU), concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.keep = channels // 2
        half = channels - self.keep
        self.branch = nn.Sequential(
            *_conv_bn(half, half, 1),
            nn.ReLU(),
            *_conv_bn(half, half, 3, groups=half),
            *_conv_bn(half, half, 1),
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.keep], x[:, self.keep :]
        out = torch.cat([x1, self.relu(self.branch(x2))], 1)
        return F.channel_shuffle(out, 2)


class DownBlock(nn.Module):
    """Two stride-2 branches (dw3x3-BN, 1x1-BN-ReLU | 1x1-BN-ReLU, dw3x3-BN, 1x1-BN-ReLU), concat, shuffle."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(
            *_conv_bn(in_channels, in_channels, 3, 2, groups=in_channels),
            *_conv_bn(in_channels, mid, 1),
            nn.ReLU(),
        )
        self.right = nn.Sequential(
            *_conv_bn(in_channels, mid, 1),
            nn.ReLU(),
            *_conv_bn(mid, mid, 3, 2, groups=mid),
            *_conv_bn(mid, mid, 1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(nn.Module):
    """RepDistiller's CIFAR ShuffleNetV2 of size ``net_size``."""

    feature_stage_names: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(self, num_classes: int, in_channels: int = 3, net_size: float = 1) -> None:
        super().__init__()
        check_choice("net_size", net_size, SHUFFLENETV2_CONFIGS)
        out_channels, num_blocks = SHUFFLENETV2_CONFIGS[net_size]
        self.stem = nn.Sequential(*_conv_bn(in_channels, 24, 1), nn.ReLU())
        ch = 24
        stages = []
        for out, n in zip(out_channels[:3], num_blocks, strict=True):
            stages.append(nn.Sequential(DownBlock(ch, out), *(SplitBlock(out) for _ in range(n))))
            ch = out
        self.layer1, self.layer2, self.layer3 = stages
        self.head = nn.Sequential(*_conv_bn(ch, out_channels[3], 1), nn.ReLU())
        self.pool = embedding_pool()
        self.fc = nn.Linear(out_channels[3], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(self.head(x)))


@register_model("shufflenetv2", family=_FAMILY, description="CIFAR ShuffleNetV2 (RepDistiller), net_size")
def shufflenetv2(num_classes: int, in_channels: int = 3, *, net_size: float = 1) -> ShuffleNetV2:
    """CIFAR ShuffleNetV2; see :class:`ShuffleNetV2`."""
    return ShuffleNetV2(num_classes, in_channels, net_size)
