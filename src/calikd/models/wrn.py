"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR, as in the CRD/RepDistiller benchmark.

``wrn_{depth}_{width}``: depth ``6n+4``, a 3x3 stem conv (16 channels), three stages of ``n`` pre-activation
blocks with ``16k, 32k, 64k`` channels (stride 1, 2, 2), a final BN-ReLU, global average pool, ``fc``.
Any valid ``wrn_{depth}_{width}`` name works (``wrn_40_2``, ``wrn_16_4``, ``wrn_28_10``, ...).

Feature taps (``feature_stage_names``):

* ``stem``: the stem conv output (no BN/ReLU);
* ``layer1``..``layer3``: stage outputs, i.e. residual sums (pre-activation network: no ReLU applied);
  with ``preact_features=True`` they become ``layer2.0.bn1``, ``layer3.0.bn1``, ``bn``: the same features
  after the BN that precedes the next ReLU (RepDistiller's ``preact`` features);
* ``pool``: the pooled embedding ``(B, 64k)`` after the final BN-ReLU, fed to ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calikd.errors import ModelError
from calikd.models._common import MAX_DEPTH, check_bool, check_float, check_int, embedding_pool, init_weights
from calikd.models.registry import register_alias, register_model, register_pattern

__all__ = ["WideBasicBlock", "WideResNet", "check_wrn_args"]

_FAMILY = "wrn"


def check_wrn_args(depth: int, width: int) -> None:
    """Raise :class:`ModelError` unless ``depth = 6n+4`` (n >= 1) and ``width >= 1``."""
    check_int("WRN width", width)
    check_int("WRN depth", depth, 0, maximum=MAX_DEPTH)
    if depth < 10 or (depth - 4) % 6:
        lower = max(10, depth - (depth - 4) % 6)
        raise ModelError(
            f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}",
            hint=f"e.g. wrn_{lower}_{width} or wrn_{lower + 6}_{width}",
        )


class WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 + shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(act)))))
        return out + (x if self.shortcut is None else self.shortcut(act))


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` for small images."""

    feature_stage_names: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "pool")

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        depth: int = 40,
        width: int = 2,
        dropout: float = 0.0,
        preact_features: bool = False,
    ) -> None:
        super().__init__()
        check_wrn_args(depth, width)
        dropout = check_float("dropout", dropout, 0.0, 1.0)
        check_bool("preact_features", preact_features)
        n = (depth - 4) // 6
        ch = (16, 16 * width, 32 * width, 64 * width)
        self.stem = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(ch[0], ch[1], n, 1, dropout)
        self.layer2 = self._make_layer(ch[1], ch[2], n, 2, dropout)
        self.layer3 = self._make_layer(ch[2], ch[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(ch[3])
        self.pool = embedding_pool()
        self.fc = nn.Linear(ch[3], num_classes)
        self.preact_stage_names = ("stem", "layer2.0.bn1", "layer3.0.bn1", "bn", "pool")
        if preact_features:
            self.feature_stage_names = self.preact_stage_names
        init_weights(self, linear="zero_bias")

    @staticmethod
    def _make_layer(in_ch: int, out_ch: int, blocks: int, stride: int, dropout: float) -> nn.Sequential:
        layers = [WideBasicBlock(in_ch, out_ch, stride, dropout)]
        layers += [WideBasicBlock(out_ch, out_ch, 1, dropout) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        x = F.relu(self.bn(x))
        return self.fc(self.pool(x))


@register_model("wrn", family=_FAMILY, description="Wide ResNet for CIFAR, depth 6n+4, widen factor width")
def wrn(
    num_classes: int,
    in_channels: int = 3,
    *,
    depth: int = 40,
    width: int = 2,
    dropout: float = 0.0,
    preact_features: bool = False,
) -> WideResNet:
    """WRN-depth-width; see :class:`WideResNet`. ``dropout`` is applied between each block's two convs."""
    return WideResNet(num_classes, in_channels, depth, width, dropout, preact_features)


for _depth, _width in ((16, 1), (16, 2), (16, 4), (16, 8), (28, 10), (40, 1), (40, 2), (40, 4)):
    register_alias(
        f"wrn_{_depth}_{_width}", "wrn", description=f"WRN-{_depth}-{_width}", depth=_depth, width=_width
    )

register_pattern(
    r"wrn_(?P<depth>\d+)_(?P<width>\d+)",
    "wrn",
    template="wrn_{depth}_{width}",
    description="Wide ResNet of the depth (6n+4) and widen factor in its name",
    validate=check_wrn_args,
)
