"""ResolutionTransform."""

from __future__ import annotations

import pytest
import torch

from calikd.data import ResolutionTransform
from calikd.errors import ConfigError


def _four_by_four() -> torch.Tensor:
    return torch.tensor(
        [[0, 2, 4, 6], [2, 4, 6, 8], [10, 20, 30, 40], [50, 60, 70, 80]], dtype=torch.float32
    ).view(1, 1, 4, 4)


def test_area_mode_by_hand() -> None:
    x = _four_by_four()
    out = ResolutionTransform(size=2)(x)
    expected = torch.tensor([[[[2.0, 6.0], [35.0, 55.0]]]])  # means of the 2x2 blocks
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(ResolutionTransform(factor=0.5)(x), expected)
    up = ResolutionTransform(size=2, upscale=True)(x)
    torch.testing.assert_close(up, expected.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def test_uint8_rounds_and_keeps_dtype() -> None:
    x = torch.tensor([[[[0, 1], [1, 1]]]], dtype=torch.uint8)  # mean 0.75 -> 1
    out = ResolutionTransform(size=1)(x)
    assert out.dtype == torch.uint8 and out.item() == 1


def test_shapes() -> None:
    x = torch.rand(3, 3, 32, 32)
    assert ResolutionTransform(size=(16, 8))(x).shape == (3, 3, 16, 8)
    assert ResolutionTransform(factor=0.25, mode="bilinear")(x).shape == (3, 3, 8, 8)
    assert ResolutionTransform(factor=0.3)(x).shape == (3, 3, 10, 10)
    up = ResolutionTransform(factor=0.25, mode="bilinear", upscale=True)
    assert up(x).shape == x.shape and up.upscale_mode == "bilinear"
    assert ResolutionTransform(size=32)(x) is x
    assert ResolutionTransform(size=8)(x.to(torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"size": 8, "factor": 0.5}, "exactly one"),
        ({"factor": 1.5}, "factor"),
        ({"factor": 0}, "factor"),
        ({"size": 0}, "size"),
        ({"size": (8, 8, 8)}, "size"),
        ({"size": 8, "mode": "aera"}, "did you mean 'area'"),
        ({"size": 8, "upscale_mode": "cubic"}, "upscale mode"),
    ],
)
def test_validation(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        ResolutionTransform(**kwargs)


def test_call_validation() -> None:
    with pytest.raises(ConfigError, match="larger than the input"):
        ResolutionTransform(size=64)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        ResolutionTransform(size=4)(torch.rand(3, 32, 32))
    with pytest.raises(ConfigError, match="uint8 or float"):
        ResolutionTransform(size=4)(torch.zeros(1, 1, 8, 8, dtype=torch.int32))


def test_dict_round_trip() -> None:
    import json

    for t in (
        ResolutionTransform(size=(8, 6), upscale=True),
        ResolutionTransform(factor=0.5, mode="bilinear"),
    ):
        again = ResolutionTransform.from_dict(json.loads(json.dumps(t.to_dict())))
        assert again == t and again.to_dict() == t.to_dict()
    with pytest.raises(ConfigError, match="unknown ResolutionTransform key"):
        ResolutionTransform.from_dict({"sizes": 4})
