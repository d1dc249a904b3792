"""A multilayer perceptron on flattened images, for fast CPU studies.

The input ``(B, C, H, W)`` is average-pooled to ``input_size x input_size`` when it has another size (so any
resolution works; ``input_size`` fixes the parameter count), flattened, then passed through ``depth`` hidden
layers (linear-norm-ReLU, ``width`` units, dropout after each) and ``fc``.

Feature taps (``feature_stage_names``): ``layer1``..``layer{depth}`` (post-ReLU hidden activations, before
dropout). The last tap is always the ``(B, width)`` embedding fed to ``fc``; with ``preact_features=True``
the others become ``layerK.norm`` (the same features before the ReLU).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from calikd.models._common import MAX_DEPTH, check_bool, check_choice, check_float, check_int
from calikd.models.registry import register_alias, register_model

__all__ = ["MLP", "FlattenResize"]

_FAMILY = "mlp"
NORMS = ("bn", "none")


class FlattenResize(nn.Module):
    """Average-pool ``(B, C, H, W)`` to ``size x size`` if needed, then flatten to ``(B, C * size**2)``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.adaptive_avg_pool2d(x, self.size)
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units on flattened ``in_channels x input_size**2`` inputs."""

    feature_stage_names: tuple[str, ...] = ("layer1", "layer2")  # for depth=2

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: int = 512,
        depth: int = 2,
        dropout: float = 0.0,
        norm: str = "bn",
        input_size: int = 28,
        preact_features: bool = False,
    ) -> None:
        super().__init__()
        check_int("width", width)
        check_int("depth", depth, maximum=MAX_DEPTH)
        dropout = check_float("dropout", dropout, 0.0, 1.0)
        check_choice("norm", norm, NORMS)
        check_int("input_size", input_size)
        check_bool("preact_features", preact_features)
        self.flatten = FlattenResize(input_size)
        features = in_channels * input_size * input_size
        for k in range(1, depth + 1):
            layer = OrderedDict(
                linear=nn.Linear(features, width, bias=norm == "none"),
                norm=nn.BatchNorm1d(width) if norm == "bn" else nn.Identity(),
                relu=nn.ReLU(),
            )
            self.add_module(f"layer{k}", nn.Sequential(layer))
            features = width
        self.depth = depth
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(features, num_classes)
        self.feature_stage_names = tuple(f"layer{k}" for k in range(1, depth + 1))
        # pre-ReLU hidden features; the last tap stays the (post-ReLU) embedding
        self.preact_stage_names = (*(f"layer{k}.norm" for k in range(1, depth)), f"layer{depth}")
        if preact_features:
            self.feature_stage_names = self.preact_stage_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for k in range(1, self.depth + 1):
            x = self.dropout(getattr(self, f"layer{k}")(x))
        return self.fc(x)


@register_model("mlp", family=_FAMILY, description="MLP on flattened images: depth x (linear-BN-ReLU), fc")
def mlp(
    num_classes: int,
    in_channels: int = 3,
    *,
    width: int = 512,
    depth: int = 2,
    dropout: float = 0.0,
    norm: str = "bn",
    input_size: int = 28,
    preact_features: bool = False,
) -> MLP:
    """MLP; inputs of another size than ``input_size`` are average-pooled to it before flattening."""
    return MLP(num_classes, in_channels, width, depth, dropout, norm, input_size, preact_features)


register_alias("mlp_small", "mlp", description="MLP, 1 hidden layer of 256 units", width=256, depth=1)
register_alias("mlp_large", "mlp", description="MLP, 3 hidden layers of 1024 units", width=1024, depth=3)
