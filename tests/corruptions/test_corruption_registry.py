"""The registry: 15 benchmark + 4 extra corruptions, both severity tables, input validation."""

from __future__ import annotations

import pytest
import torch

from calikd.corruptions import corrupt, get_corruption, list_corruptions, resolve_corruptions, resolve_table
from calikd.errors import ConfigError

BENCHMARK = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
]
EXTRA = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]


def test_the_benchmark_and_extra_corruptions_are_all_there() -> None:
    assert sorted(list_corruptions("benchmark")) == sorted(BENCHMARK)
    assert sorted(list_corruptions("extra")) == sorted(EXTRA)
    assert list_corruptions() == list_corruptions("benchmark") + list_corruptions("extra")
    for name in BENCHMARK + EXTRA:
        c = get_corruption(name)
        assert len(c.cifar) == len(c.imagenet) == 5 and c.description


def test_tables_are_picked_by_size_and_differ() -> None:
    assert resolve_table("auto", 32, 32) == "cifar" and resolve_table("auto", 28, 28) == "cifar"
    assert resolve_table("auto", 64, 64) == "imagenet" and resolve_table("cifar", 224, 224) == "cifar"
    noise = get_corruption("gaussian_noise")
    assert noise.cifar != noise.imagenet


def test_resolve_groups_and_names() -> None:
    assert resolve_corruptions("all") == list_corruptions()
    assert resolve_corruptions("fog, contrast,fog") == ["fog", "contrast"]
    assert resolve_corruptions(["benchmark", "saturate"]) == [*list_corruptions("benchmark"), "saturate"]
    with pytest.raises(ConfigError, match="did you mean 'motion_blur'"):
        resolve_corruptions("motion_blurr")


@pytest.mark.parametrize(
    "images,severity,message",
    [
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), 1, "float tensor in \\[0, 1\\]"),
        (torch.zeros(3, 16, 16), 1, "shape \\(N, C, H, W\\)"),
        (torch.zeros(2, 4, 16, 16), 1, "C = 1 or 3"),
        (torch.zeros(2, 1, 7, 16), 1, "at least 8x8"),
        (torch.full((1, 1, 8, 8), 255.0), 1, "pixel values in \\[0, 1\\]"),
        (torch.full((1, 1, 8, 8), float("nan")), 1, "NaN"),
        (torch.zeros(1, 1, 8, 8), 6, "severity must be an integer from 1 to 5"),
        (torch.zeros(1, 1, 8, 8), 2.0, "severity must be an integer from 1 to 5"),
    ],
)
def test_bad_input_is_refused(images: torch.Tensor, severity: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        corrupt(images, "contrast", severity)  # type: ignore[arg-type]


def test_dtype_and_device_are_kept() -> None:
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    out = corrupt(x, "contrast", 3)
    assert out.dtype == torch.float64 and out.shape == x.shape


#: corruptions without random draws: the seed does not change them
DETERMINISTIC = {
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "saturate",
    "defocus_blur",
    "zoom_blur",
    "gaussian_blur",
}


@pytest.mark.parametrize("name", BENCHMARK + EXTRA)
@pytest.mark.parametrize(
    "shape", [(2, 3, 32, 32), (2, 1, 32, 32), (3, 3, 8, 12), (2, 1, 12, 8), (1, 3, 64, 64), (2, 3, 33, 20)]
)
def test_contract(name: str, shape: tuple[int, int, int, int]) -> None:
    """Shape and dtype kept, values in [0, 1], deterministic for a seed, the image changed; colour-blind
    corruptions aside (saturate on grayscale is the identity)."""
    clean = 0.1 + 0.8 * torch.rand(shape, generator=torch.Generator().manual_seed(0))
    for severity in (1, 5):
        out = corrupt(clean, name, severity, seed=7)
        assert out.shape == clean.shape and out.dtype == clean.dtype
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(out, corrupt(clean, name, severity, seed=7))
        if severity == 5:
            same_for_other_seed = torch.equal(out, corrupt(clean, name, severity, seed=8))
            assert same_for_other_seed == (name in DETERMINISTIC)
        if severity == 5 and not (name == "saturate" and shape[1] == 1):  # mild ones may miss tiny images
            assert not torch.equal(out, clean)
