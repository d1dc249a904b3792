"""CIFAR ShuffleNet (v1, groups=3) as in the CRD/RepDistiller benchmark (``ShuffleV1`` there).

A 1x1 stem conv to 24 channels (BN, ReLU; no downsampling), three stages of 4/8/4 bottlenecks with
240/480/960 output channels (the first of each stage has stride 2 and concatenates an avg-pooled shortcut),
global average pool, ``fc``.

Feature taps (``feature_stage_names``): ``stem``, ``layer1``..``layer3`` (post-ReLU stage outputs; with
``preact_features=True`` ``layerK.{last}.preact``, the last block's output before its ReLU) and ``pool``
(the ``(B, 960)`` embedding fed to ``fc``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calikd.models._common import check_bool, embedding_pool, init_weights
from calikd.models.registry import register_model

__all__ = ["ShuffleNetV1", "ShuffleV1Bottleneck"]

_FAMILY = "shufflenetv1"


class ShuffleV1Bottleneck(nn.Module):
    """Grouped 1x1-BN-ReLU, channel shuffle, depthwise 3x3-BN-ReLU, grouped 1x1-BN; add or concat shortcut."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, groups: int, first_groups: int
    ) -> None:
        super().__init__()
        mid = out_channels // 4
        self.stride = stride
        self.shuffle_groups = first_groups
        self.conv1 = nn.Conv2d(in_channels, mid, 1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        self.preact = nn.Identity()  # tap point: output before the final ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        if self.shuffle_groups > 1:
            out = F.channel_shuffle(out, self.shuffle_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        out = torch.cat([out, res], 1) if self.stride == 2 else out + res
        return F.relu(self.preact(out))


class ShuffleNetV1(nn.Module):
    """RepDistiller's CIFAR ShuffleNet v1 (out channels 240/480/960, blocks 4/8/4, groups 3)."""

    feature_stage_names: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(self, num_classes: int, in_channels: int = 3, preact_features: bool = False) -> None:
        super().__init__()
        check_bool("preact_features", preact_features)
        out_channels, num_blocks, groups = (240, 480, 960), (4, 8, 4), 3
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        ch = 24
        stages = []
        for out, n in zip(out_channels, num_blocks, strict=True):
            # the first block concatenates its (pooled) input, so its branch makes out - ch channels;
            # the very first block (on the 24-channel stem) uses an ungrouped first 1x1 conv
            blocks = [ShuffleV1Bottleneck(ch, out - ch, 2, groups, 1 if ch == 24 else groups)]
            blocks += [ShuffleV1Bottleneck(out, out, 1, groups, groups) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            ch = out
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = embedding_pool()
        self.fc = nn.Linear(ch, num_classes)
        taps = (f"layer{k}.{n - 1}.preact" for k, n in zip((1, 2, 3), num_blocks, strict=True))
        self.preact_stage_names = ("stem", *taps, "pool")
        if preact_features:
            self.feature_stage_names = self.preact_stage_names
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x))


@register_model("shufflenetv1", family=_FAMILY, description="CIFAR ShuffleNet v1, groups 3 (RepDistiller)")
def shufflenetv1(num_classes: int, in_channels: int = 3, *, preact_features: bool = False) -> ShuffleNetV1:
    """CIFAR ShuffleNet v1; see :class:`ShuffleNetV1`."""
    return ShuffleNetV1(num_classes, in_channels, preact_features)
