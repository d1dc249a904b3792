"""CIFAR VGGs with batch norm, as in the CRD/RepDistiller benchmark (``vggN`` there is ``vggN_bn``).

Five conv blocks (3x3 conv with bias, BN, ReLU), 2x2 max-pools between the first four, global average pool
and a single ``fc`` (no VGG FC stack). As in RepDistiller, the pool between blocks 3 and 4 only applies
to large feature maps (>= 8 px there, e.g. 64 px inputs), so 32 px inputs keep 4x4 maps in the last block.

Feature taps (``feature_stage_names``): ``stem`` (block 0), ``layer1``..``layer4`` (post-ReLU block outputs,
before pooling; with ``preact_features=True`` the last BN of each of ``layer1..4``, i.e. before its ReLU)
and ``pool`` (the ``(B, 512)`` embedding fed to ``fc``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calikd.models._common import check_bool, embedding_pool, init_weights
from calikd.models.registry import register_model

__all__ = ["VGG", "VGG_CONFIGS"]

_FAMILY = "vgg"

VGG_CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    8: ((64,), (128,), (256,), (512,), (512,)),
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


class MaxPoolIfLarge(nn.Module):
    """2x2 max-pool applied only when the feature map is at least ``min_size`` pixels high and wide."""

    def __init__(self, min_size: int = 8) -> None:
        super().__init__()
        self.min_size = min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) >= self.min_size:
            return F.max_pool2d(x, 2, 2)
        return x

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}"


def _block(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        in_channels = w
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG-``depth`` (8, 11, 13, 16 or 19) with BN for small images."""

    feature_stage_names: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4", "pool")

    def __init__(
        self, num_classes: int, in_channels: int = 3, depth: int = 13, preact_features: bool = False
    ) -> None:
        super().__init__()
        cfg = VGG_CONFIGS[depth]
        check_bool("preact_features", preact_features)
        self.stem = _block(in_channels, cfg[0])
        self.down1 = nn.MaxPool2d(2, 2)
        self.layer1 = _block(cfg[0][-1], cfg[1])
        self.down2 = nn.MaxPool2d(2, 2)
        self.layer2 = _block(cfg[1][-1], cfg[2])
        self.down3 = nn.MaxPool2d(2, 2)
        self.layer3 = _block(cfg[2][-1], cfg[3])
        self.down4 = MaxPoolIfLarge(8)
        self.layer4 = _block(cfg[3][-1], cfg[4])
        self.pool = embedding_pool()
        self.fc = nn.Linear(cfg[4][-1], num_classes)
        last_bn = [f"layer{k}.{3 * len(cfg[k]) - 2}" for k in range(1, 5)]
        self.preact_stage_names = ("stem", *last_bn, "pool")
        if preact_features:
            self.feature_stage_names = self.preact_stage_names
        init_weights(self, linear="normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down1(self.stem(x))
        x = self.down2(self.layer1(x))
        x = self.down3(self.layer2(x))
        x = self.down4(self.layer3(x))
        return self.fc(self.pool(self.layer4(x)))


def _make_factory(depth: int) -> None:
    def factory(num_classes: int, in_channels: int = 3, *, preact_features: bool = False) -> VGG:
        return VGG(num_classes, in_channels, depth, preact_features)

    factory.__name__ = factory.__qualname__ = f"vgg{depth}"
    factory.__doc__ = f"VGG-{depth} with BN (RepDistiller's vgg{depth}_bn); see :class:`VGG`."
    convs = sum(len(b) for b in VGG_CONFIGS[depth])
    register_model(
        f"vgg{depth}", family=_FAMILY, description=f"CIFAR VGG-{depth} with BN ({convs} convs + fc)"
    )(factory)


for _depth in VGG_CONFIGS:
    _make_factory(_depth)
