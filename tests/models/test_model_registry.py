"""Registry: names, presets, patterns, kwargs validation and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from calikd.errors import ModelError
from calikd.models import count_parameters, create_model, list_models, model_info, register_model, registry

REQUIRED = [
    *(f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)),
    "resnet8x4",
    "resnet32x4",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_16_4",
    "wrn_28_10",
    "wrn_40_1",
    "wrn_40_2",
    *(f"vgg{d}" for d in (8, 11, 13, 16, 19)),
    "mobilenetv2",
    "mobilenetv2_half",
    "shufflenetv1",
    "shufflenetv2",
    "cnn",
    "cnn_tiny",
    "cnn_small",
    "cnn_medium",
    "cnn_large",
    "mlp",
    "mlp_small",
    "mlp_large",
]


def meta_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: object) -> nn.Module:
    """Build without allocating or initialising weights (fast, for structure-only checks)."""
    with torch.device("meta"):
        return create_model(name, num_classes, in_channels, **kwargs)


def test_list_models_sorted_and_complete() -> None:
    names = list_models()
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    missing = set(REQUIRED) - set(names)
    assert not missing


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnt20' \(did you mean 'resnet20'\?\)") as info:
        create_model("resnt20", 10)
    assert "known models:" in str(info.value) and "wrn_{depth}_{width}" in str(info.value)
    with pytest.raises(KeyError):  # ModelError is a KeyError too
        model_info("mobile_half")
    with pytest.raises(ModelError, match="did you mean 'mobilenetv2_half'"):
        model_info("mobile_half")


def test_names_are_case_and_dash_insensitive() -> None:
    assert model_info("ResNet20")["name"] == "resnet20"
    assert model_info("WRN-40-2")["name"] == "wrn_40_2"


def test_bad_kwarg_suggests_and_lists_accepted() -> None:
    with pytest.raises(ModelError, match=r"has no argument 'widht' \(did you mean 'width'\?\)") as info:
        create_model("cnn", 10, 1, widht=8)
    assert "accepted arguments: width=32, depth=1" in str(info.value)
    with pytest.raises(ModelError, match="model 'resnet20' has no argument 'dropout'"):
        create_model("resnet20", 10, dropout=0.1)


def test_fixed_kwarg_of_preset_is_rejected() -> None:
    with pytest.raises(ModelError, match=r"'resnet20' fixes depth=20") as info:
        create_model("resnet20", 10, depth=32)
    assert "use 'resnet' with depth=" in str(info.value)
    with pytest.raises(ModelError, match=r"fixes width_mult=0\.5"):
        create_model("mobilenetv2_half", 10, width_mult=1.0)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("cnn", {"width": 0}, "width must be an integer >= 1"),
        ("cnn", {"depth": 1.5}, "depth must be an integer"),
        ("cnn", {"dropout": 1.0}, r"dropout must be a number in \[0.0, 1.0\)"),
        ("cnn", {"norm": "ln"}, "norm must be one of 'bn', 'none'"),
        ("mlp", {"input_size": 0}, "input_size must be an integer >= 1"),
        ("mlp", {"preact_features": 1}, "preact_features must be True or False"),
        ("mobilenetv2", {"width_mult": -1}, "width_mult must be a number"),
        ("shufflenetv2", {"net_size": 3}, "net_size must be one of 0.2, 0.3, 0.5, 1, 1.5, 2"),
        ("resnet", {"depth": 21}, "ResNet depth must be 6n\\+2"),
        ("resnet", {"widths": (16, 32, 64)}, "ResNet widths must be 4 numbers"),
        ("wrn", {"depth": 41}, "WRN depth must be 6n\\+4"),
        ("wrn", {"dropout": -0.1}, "dropout must be a number"),
    ],
)
def test_bad_kwarg_values(name: str, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        meta_model(name, **kwargs)


def test_bad_num_classes_and_channels() -> None:
    with pytest.raises(ModelError, match="num_classes must be an integer >= 1"):
        create_model("cnn", 0)
    with pytest.raises(ModelError, match="in_channels must be an integer >= 1"):
        create_model("cnn", 10, in_channels=True)


def test_wrn_pattern_parses_any_valid_name() -> None:
    info = model_info("wrn_22_3")
    assert info["family"] == "wrn" and info["base"] == "wrn"
    assert info["fixed"] == {"depth": 22, "width": 3}
    assert "depth" not in info["kwargs"] and info["kwargs"]["dropout"] == 0.0
    m = meta_model("wrn_22_3", 100)
    assert len(m.layer1) == 3 and m.fc.in_features == 64 * 3
    assert "wrn_22_3" not in list_models()


@pytest.mark.parametrize("name", ["wrn_41_2", "wrn_4_2", "wrn_0_1"])
def test_wrn_pattern_rejects_invalid_depth(name: str) -> None:
    with pytest.raises(
        ModelError, match=r"WRN depth must be 6n\+4 with n >= 1 \(10, 16, 22, 28, 40, ...\)"
    ) as e:
        model_info(name)
    assert "hint: e.g. wrn_" in str(e.value)


def test_wrn_pattern_rejects_zero_width() -> None:
    with pytest.raises(ModelError, match="WRN width must be an integer >= 1"):
        create_model("wrn_16_0", 10)


def test_resnet_pattern() -> None:
    assert model_info("resnet26")["fixed"] == {"depth": 26}
    assert len(meta_model("resnet26").layer1) == 4
    with pytest.raises(ModelError, match=r"ResNet depth must be 6n\+2"):
        model_info("resnet21")


def test_model_info_reports_factory_kwargs() -> None:
    info = model_info("cnn")
    assert info == {
        "name": "cnn",
        "family": "cnn",
        "description": info["description"],
        "kwargs": {
            "width": 32,
            "depth": 1,
            "stages": 3,
            "dropout": 0.0,
            "norm": "bn",
            "preact_features": False,
        },
    }
    small = model_info("cnn_small")
    assert small["base"] == "cnn" and small["fixed"] == {"width": 16, "depth": 1}
    assert "width" not in small["kwargs"] and "stages" in small["kwargs"]
    assert model_info("mobilenetv2")["kwargs"] == {"width_mult": 1.0, "expand_ratio": 6}
    assert model_info("resnet32x4")["fixed"] == {"depth": 32, "widths": (32, 64, 128, 256)}
    for name in list_models():
        assert set(model_info(name)) >= {"name", "family", "description", "kwargs"}


def test_register_model_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))

    @register_model("toy_linear", family="toy", description="a linear layer")
    def toy(num_classes: int, in_channels: int = 3, *, scale: float = 1.0) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    assert "toy_linear" in list_models()
    assert model_info("toy_linear")["kwargs"] == {"scale": 1.0}
    assert isinstance(create_model("toy_linear", 4, scale=2.0), nn.Sequential)
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy_linear", family="toy", description="again")(
            lambda num_classes, in_channels=3: None
        )
    with pytest.raises(TypeError, match="kwargs must be listable"):
        register_model("toy_var", family="toy", description="")(lambda num_classes, in_channels=3, **kw: None)


def test_count_parameters_counts_trainable_only() -> None:
    m = create_model("mlp_small", 10, 1)
    total = count_parameters(m)
    assert total == 784 * 256 + 2 * 256 + 256 * 10 + 10
    m.fc.requires_grad_(False)
    assert count_parameters(m) == total - (256 * 10 + 10)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"depth": 2**63}, "depth must be at most 10,000, got 9,223,372,036,854,775,808"),
        ({"width": 10**7}, "width must be at most 1,000,000"),
    ],
)
def test_absurd_sizes_are_refused_before_building(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model("mlp", num_classes=10, in_channels=1, **kwargs)
    with pytest.raises(ModelError, match="num_classes must be at most 1,000,000"):
        create_model("cnn", num_classes=10**8, in_channels=1)
