"""FeatureHooks / feature_stages: tap names and shapes, lifetime of hooks, pre-ReLU taps, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from calikd.errors import ModelError
from calikd.models import (
    FeatureHooks,
    create_model,
    feature_stages,
    list_models,
    model_info,
    preact_feature_stages,
)


def shapes(features: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in features.items()}


@pytest.mark.parametrize(
    ("name", "channels", "size", "expected"),
    [
        (
            "resnet20",
            3,
            32,
            {
                "stem": (2, 16, 32, 32),
                "layer1": (2, 16, 32, 32),
                "layer2": (2, 32, 16, 16),
                "layer3": (2, 64, 8, 8),
                "pool": (2, 64),
            },
        ),
        (
            "resnet8x4",
            3,
            32,
            {
                "stem": (2, 32, 32, 32),
                "layer1": (2, 64, 32, 32),
                "layer2": (2, 128, 16, 16),
                "layer3": (2, 256, 8, 8),
                "pool": (2, 256),
            },
        ),
        (
            "wrn_16_2",
            3,
            32,
            {
                "stem": (2, 16, 32, 32),
                "layer1": (2, 32, 32, 32),
                "layer2": (2, 64, 16, 16),
                "layer3": (2, 128, 8, 8),
                "pool": (2, 128),
            },
        ),
        (
            "cnn",
            1,
            28,
            {"layer1": (2, 32, 14, 14), "layer2": (2, 64, 7, 7), "layer3": (2, 128, 4, 4), "pool": (2, 128)},
        ),
        ("mlp", 1, 28, {"layer1": (2, 512), "layer2": (2, 512)}),
    ],
)
def test_feature_names_and_shapes(name: str, channels: int, size: int, expected: dict) -> None:
    model = create_model(name, 10, channels)
    assert feature_stages(model) == tuple(expected)
    with FeatureHooks(model) as hooks:
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 10)
    assert shapes(hooks.features) == expected
    emb = hooks.features[feature_stages(model)[-1]]
    assert emb.shape[1] == model.fc.in_features
    torch.testing.assert_close(model.fc(emb), out)  # the last tap is exactly what fc sees


def test_feature_stage_names_is_a_class_attribute_of_every_model() -> None:
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name, 10)
        assert isinstance(type(model).feature_stage_names, tuple)
        modules = dict(model.named_modules())
        assert all(n in modules for n in feature_stages(model)), name
        assert isinstance(modules["fc"], nn.Linear)


def test_hooks_removed_after_context() -> None:
    model = create_model("resnet8", 10)
    with FeatureHooks(model, ["layer1", "pool"]) as hooks:
        model(torch.randn(2, 3, 16, 16))
        assert set(hooks.features) == {"layer1", "pool"}
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    kept = hooks.features
    model(torch.randn(3, 3, 16, 16))
    assert hooks.features is kept and kept["pool"].shape == (2, 64)  # not updated any more
    hooks.remove()  # idempotent


def test_features_replaced_at_each_forward_and_clear() -> None:
    model = create_model("cnn_tiny", 10, 1)
    hooks = FeatureHooks(model, "layer2")  # a single name is accepted
    model(torch.randn(2, 1, 28, 28))
    first = hooks.features
    model(torch.randn(5, 1, 28, 28))
    assert first["layer2"].shape[0] == 2 and hooks.features["layer2"].shape[0] == 5
    hooks.clear()
    assert hooks.features == {}
    hooks.remove()


def test_detach_option() -> None:
    model = create_model("cnn_tiny", 10, 1)
    x = torch.randn(2, 1, 28, 28)
    with FeatureHooks(model, detach=True) as hooks:
        model(x)
    assert not any(f.requires_grad for f in hooks.features.values())
    with FeatureHooks(model) as hooks:
        model(x)
    hooks.features["layer2"].pow(2).mean().backward()  # feature losses backpropagate into the model
    assert model.layer1.conv1.weight.grad is not None


def test_unknown_name_lists_valid_names() -> None:
    model = create_model("resnet8", 10)
    with pytest.raises(
        ModelError, match=r"ResNet has no submodule 'layr1' \(did you mean 'layer1'\?\)"
    ) as info:
        FeatureHooks(model, ["layer1", "layr1"])
    message = str(info.value)
    assert "feature stages: stem, layer1, layer2, layer3, pool" in message
    assert "top-level modules: stem, layer1, layer2, layer3, pool, fc" in message
    assert all(not m._forward_hooks for m in model.modules())  # nothing left registered


def test_model_without_declared_stages() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ModelError, match="Sequential declares no feature_stage_names"):
        FeatureHooks(model)
    with FeatureHooks(model, ["1"]) as hooks:
        model(torch.randn(2, 1, 8, 8))
    assert hooks.features["1"].shape == (2, 4, 6, 6)


def test_wrapped_model() -> None:
    model = create_model("resnet8", 10)
    wrapped = nn.DataParallel(model)  # also how DDP exposes the model: .module
    assert feature_stages(wrapped) == tuple(f"module.{n}" for n in feature_stages(model))


PREACT_MODELS = [
    "resnet20",
    "resnet8x4",
    "wrn_16_2",
    "vgg8",
    "vgg13",
    "shufflenetv1",
    "cnn",
    "cnn_medium",
    "mlp",
]


def test_preact_option_where_offered() -> None:
    offered = {model_info(n)["family"] for n in list_models() if "preact_features" in model_info(n)["kwargs"]}
    assert offered == {"resnet", "wrn", "vgg", "shufflenetv1", "cnn", "mlp"}
    assert offered == {model_info(n)["family"] for n in PREACT_MODELS}


@pytest.mark.parametrize("name", PREACT_MODELS)
def test_preact_taps_match_post_relu_taps(name: str) -> None:
    torch.manual_seed(0)
    plain = create_model(name, 10, 3)
    torch.manual_seed(0)
    model = create_model(name, 10, 3, preact_features=True)
    assert feature_stages(model) != feature_stages(plain)
    assert feature_stages(model)[-1] == feature_stages(plain)[-1]  # the embedding tap is unchanged
    names = dict.fromkeys(feature_stages(model) + feature_stages(plain))
    with torch.no_grad(), FeatureHooks(model, list(names)) as hooks:
        model(torch.randn(2, 3, 16, 16))
    feats = hooks.features
    for pre, post in zip(feature_stages(model), feature_stages(plain), strict=True):
        assert feats[pre].shape == feats[post].shape, (pre, post)
    pre_only = [n for n in feature_stages(model) if n not in feature_stages(plain)]
    assert all((feats[n] < 0).any() for n in pre_only)


def test_resnet_preact_is_the_relu_input() -> None:
    model = create_model("resnet14", 10, preact_features=True)
    assert feature_stages(model) == ("stem", "layer1.1.preact", "layer2.1.preact", "layer3.1.preact", "pool")
    with torch.no_grad(), FeatureHooks(model, [*feature_stages(model), "layer3"]) as hooks:
        model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(F.relu(hooks.features["layer3.1.preact"]), hooks.features["layer3"])


@pytest.mark.parametrize("name", PREACT_MODELS)
def test_preact_taps_are_declared_without_the_flag(name: str) -> None:
    """AB and OFD hook pre-ReLU taps on already-built models (a teacher from a checkpoint)."""
    plain, flagged = create_model(name, 10, 3), create_model(name, 10, 3, preact_features=True)
    assert preact_feature_stages(plain) == feature_stages(flagged) == preact_feature_stages(flagged)
    with pytest.raises(ModelError, match="no pre-ReLU"):
        preact_feature_stages(torch.nn.Linear(2, 2))
    wrapped = torch.nn.DataParallel(plain)
    assert preact_feature_stages(wrapped) == tuple(f"module.{n}" for n in preact_feature_stages(plain))
