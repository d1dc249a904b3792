"""Small pieces shared by the model families: argument checks, the embedding pool, weight init."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from calikd.errors import ModelError

MAX_COUNT = 1_000_000  # widths, sizes, classes: far above any real model, far below a hang or a TiB
MAX_DEPTH = 10_000  # layers and blocks: ResNet-1202 has 1202


def check_int(name: str, value: Any, minimum: int = 1, maximum: int = MAX_COUNT) -> int:
    """``value`` if it is an ``int`` in ``[minimum, maximum]``, else :class:`ModelError` (the upper bound
    stops a typo such as ``depth=2**63`` from hanging the process while it builds layers)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value > maximum:
        raise ModelError(f"{name} must be at most {maximum:,}, got {value:,}")
    return value


def check_float(name: str, value: Any, low: float, high: float, *, high_inclusive: bool = False) -> float:
    """``float(value)`` if ``low <= value < high`` (``<= high`` when inclusive), else :class:`ModelError`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = low <= value <= high if high_inclusive else low <= value < high
    if not ok:
        bracket = "]" if high_inclusive else ")"
        raise ModelError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else :class:`ModelError` listing them."""
    choices = list(choices)
    if value not in choices or isinstance(value, bool):
        raise ModelError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ModelError(f"{name} must be True or False, got {value!r}")
    return value


class GlobalAvgPool(nn.Module):
    """Global average pool + flatten: ``(B, C, H, W) -> (B, C)``.

    Same result as ``AdaptiveAvgPool2d(1)`` + ``Flatten()``, but a plain mean, whose backward is
    deterministic on CUDA (``torch.use_deterministic_algorithms(True)`` rejects adaptive pooling's).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


def embedding_pool() -> GlobalAvgPool:
    """The module named ``pool`` in every conv model: the embedding ``(B, C)`` right before ``fc``."""
    return GlobalAvgPool()


def init_weights(model: nn.Module, linear: Literal["default", "zero_bias", "normal"] = "default") -> None:
    """Kaiming-normal (fan_out, ReLU) convs with zero bias; norm layers weight 1, bias 0.

    ``linear``: ``"default"`` keeps PyTorch's init, ``"zero_bias"`` zeroes biases, ``"normal"`` draws
    weights from N(0, 0.01) with zero bias (as the reference VGG / MobileNetV2 do).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear != "default":
            if linear == "normal":
                nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
