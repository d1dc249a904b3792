"""Fixtures of the checkpoint-store tests: a tiny model factory and an exact tree comparison."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn


def tiny_model(name: str, *, num_classes: int, in_channels: int, width: int = 4) -> nn.Module:
    """A small conv net with BatchNorm buffers; stands in for ``calikd.models.create_model``."""
    if name != "tiny":
        raise KeyError(name)
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def assert_tree_equal(got: Any, want: Any, path: str = "root") -> None:
    """Exact equality: same types (int stays int, tuple stays tuple), key order, bitwise tensors, floats."""
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, f"{path}: {got.dtype}{got.shape}"
        assert torch.equal(_bits(got), _bits(want)), f"{path}: tensor bits differ"
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want) or (math.isnan(got) and math.isnan(want)), (
            path
        )
    elif isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for (kg, vg), (kw, vw) in zip(got.items(), want.items(), strict=True):
            assert type(kg) is type(kw), f"{path}: key {kg!r} type"
            assert_tree_equal(vg, vw, f"{path}[{kw!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: length"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_tree_equal(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.fixture
def tree_equal() -> Callable[[Any, Any], None]:
    return assert_tree_equal


@pytest.fixture
def factory() -> Callable[..., nn.Module]:
    return tiny_model


@pytest.fixture
def tiny_meta() -> dict[str, Any]:
    return {
        "model": {"name": "tiny", "kwargs": {"width": 4}},
        "num_classes": 10,
        "in_channels": 3,
        "dataset": {"name": "synthetic", "split": "train"},
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "input_size": [8, 8],
        "epoch": 3,
        "metrics": {"val_acc": 0.5, "val_nll": 1.25},
    }
