"""The digital family: contract, and agreement with the reference maths (HSV, Pillow's BOX and JPEG, scipy's
Gaussian filter and ``map_coordinates`` for the elastic field)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from calikd.corruptions import corrupt, get_corruption, list_corruptions
from calikd.corruptions.color import hsv_to_rgb, rgb_to_hsv
from calikd.corruptions.digital import _gaussian_reflect, elastic_transform
from calikd.corruptions.kernels import gaussian_blur

DIGITAL = ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate")
RANDOM = ("elastic_transform",)


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Natural-ish images: smooth structure plus some fine texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    smooth = gaussian_blur(torch.rand((n, c, h, w), generator=g), 1.5)
    fine = torch.rand((n, c, h, w), generator=g)
    return (1.2 * smooth - 0.3 + 0.4 * fine).clamp(0.0, 1.0)


def _distortion(clean: torch.Tensor, name: str, severity: int, table: str = "auto") -> float:
    return float((corrupt(clean, name, severity, seed=3, table=table) - clean).abs().mean())


def test_registered_in_the_digital_family() -> None:
    for name in DIGITAL:
        assert get_corruption(name).family == "digital"
    assert set(DIGITAL[:5]) <= set(list_corruptions("benchmark"))
    assert "saturate" in list_corruptions("extra")


@pytest.mark.parametrize("name", ("brightness", "contrast", "pixelate", "jpeg_compression"))
@pytest.mark.parametrize(("size", "table"), [(32, "auto"), (64, "auto"), (32, "imagenet")])
def test_distortion_grows_with_severity(name: str, size: int, table: str) -> None:
    clean = _images(2, 3, size, size)
    levels = [_distortion(clean, name, s, table) for s in (1, 2, 3, 4, 5)]
    assert all(a < b for a, b in itertools.pairwise(levels)), levels


# ------------------------------------------------------------------------------------ colour --


def test_hsv_follows_skimage_conventions() -> None:
    rgb = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0.2, 0.4, 0.8]]
    )
    hsv = rgb_to_hsv(rgb.T.reshape(1, 3, 7, 1)).reshape(3, 7).T
    expected = torch.tensor(
        [
            [0, 1, 1],
            [1 / 3, 1, 1],
            [2 / 3, 1, 1],
            [1 / 6, 1, 1],
            [0, 0, 0.5],
            [0, 0, 0],
            [0.6111111, 0.75, 0.8],
        ]
    )
    assert torch.allclose(hsv, expected, atol=1e-6)
    batch = _images(2, 3, 16, 16)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(batch)), batch, atol=1e-6)


def test_brightness_scales_rgb_by_the_value_ratio() -> None:
    # HSV with hue and saturation fixed is linear in V: rgb' = rgb * min(V + c, 1) / V; black turns grey c
    clean = _images(2, 3, 16, 16)
    clean[0, :, 0, 0] = 0.0
    shift = 0.3  # CIFAR-C severity 5
    value = clean.amax(dim=1, keepdim=True)
    expected = clean * (value + shift).clamp(max=1) / value.clamp(min=1e-12)
    expected = torch.where(value == 0, torch.full_like(expected, shift), expected)
    assert torch.allclose(corrupt(clean, "brightness", 5), expected, atol=1e-5)
    grey = _images(2, 1, 16, 16)
    assert torch.allclose(corrupt(grey, "brightness", 5), (grey + shift).clamp(max=1), atol=1e-6)


def test_saturate() -> None:
    grey = _images(2, 1, 16, 16)
    assert torch.equal(corrupt(grey, "saturate", 5), grey)  # grayscale: identity
    clean = _images(2, 3, 32, 32)
    sat = [float(rgb_to_hsv(corrupt(clean, "saturate", s))[:, 1].mean()) for s in (1, 2, 3, 4, 5)]
    base = float(rgb_to_hsv(clean)[:, 1].mean())
    assert sat[1] < sat[0] < base < sat[2] < sat[3] < sat[4]  # 0.3x, 0.1x, then 1.5x, 2x + 0.1, 2.5x + 0.2
    assert torch.allclose(
        rgb_to_hsv(corrupt(clean, "saturate", 2))[:, 1], 0.1 * rgb_to_hsv(clean)[:, 1], atol=1e-5
    )
    # as in the reference, a grey RGB pixel has hue 0: adding saturation tints it red
    tinted = corrupt(torch.full((1, 3, 8, 8), 0.5), "saturate", 5)
    assert torch.allclose(tinted[0, :, 0, 0], torch.tensor([0.5, 0.4, 0.4]), atol=1e-6)


def test_contrast_keeps_the_per_channel_means() -> None:
    clean = _images(3, 3, 32, 32)
    out = corrupt(clean, "contrast", 5)
    means = clean.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out, (clean - means) * 0.15 + means, atol=1e-6)
    assert torch.allclose(out.mean(dim=(2, 3)), clean.mean(dim=(2, 3)), atol=1e-6)
    assert float(out.std()) < float(clean.std())


# ---------------------------------------------------------------------------------- pixelate --


@pytest.mark.parametrize(
    ("h", "w", "severity"), [(32, 32, 1), (32, 32, 5), (8, 12, 3), (64, 64, 2), (40, 56, 4)]
)
def test_pixelate_equals_pillows_box_down_and_up(h: int, w: int, severity: int) -> None:
    clean = _images(1, 1, h, w)
    factor = get_corruption("pixelate").param(severity, "cifar" if max(h, w) <= 32 else "imagenet")
    pil = Image.fromarray(clean[0, 0].numpy(), mode="F")
    pil = pil.resize((int(w * factor), int(h * factor)), Image.BOX).resize((w, h), Image.BOX)
    assert np.allclose(corrupt(clean, "pixelate", severity)[0, 0].numpy(), np.asarray(pil), atol=1e-5)


def test_pixelate_by_an_integer_factor_makes_constant_blocks() -> None:
    clean = _images(2, 3, 64, 64)
    out = corrupt(clean, "pixelate", 2)  # ImageNet-C factor 0.5: 2x2 blocks
    blocks = F.avg_pool2d(clean, 2)
    assert torch.allclose(out, F.interpolate(blocks, scale_factor=2, mode="nearest"), atol=1e-6)


# -------------------------------------------------------------------------------------- JPEG --


def _pil_jpeg(image: np.ndarray, quality: int, mode: str) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image, mode=mode).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def test_jpeg_equals_a_pillow_round_trip() -> None:
    clean = (_images(2, 3, 32, 32) * 255).round() / 255
    out = corrupt(clean, "jpeg_compression", 5)  # CIFAR-C quality 40
    pixels = (clean[1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal((out[1].permute(1, 2, 0).numpy() * 255).round(), _pil_jpeg(pixels, 40, "RGB"))
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)  # uint8 levels
    grey = (_images(1, 1, 12, 8) * 255).round() / 255
    out = corrupt(grey, "jpeg_compression", 3)
    pixels = (grey[0, 0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal((out[0, 0].numpy() * 255).round(), _pil_jpeg(pixels, 58, "L"))


# ----------------------------------------------------------------------------------- elastic --


def test_gaussian_reflect_matches_scipy_for_any_radius() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    field = torch.rand(2, 20, 28, generator=torch.Generator().manual_seed(0))
    for sigma in (0.5, 1.28, 6.4, 70.0):  # radius 3 sigma far beyond the 20 px side for the last
        expected = np.stack(
            [ndimage.gaussian_filter(f.double().numpy(), sigma, mode="reflect", truncate=3) for f in field]
        )
        assert np.allclose(_gaussian_reflect(field, sigma).numpy(), expected, atol=1e-6)


def test_elastic_field_matches_scipy_map_coordinates() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    clean = _images(2, 3, 32, 32)
    alpha, sigma = 3.2, 1.28  # CIFAR-C severity 4, without the affine jitter
    out = elastic_transform(clean, (alpha, sigma, 0.0, 32), torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    torch.rand((2, 3, 2), generator=gen)  # the (zero-width) affine jitter
    noise = (torch.rand((2, 2, 32, 32), generator=gen) * 2 - 1).double().numpy()
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    for i in range(2):
        dx, dy = (
            ndimage.gaussian_filter(noise[i, j], sigma, mode="reflect", truncate=3) * alpha for j in (0, 1)
        )
        expected = [
            ndimage.map_coordinates(clean[i, c].double().numpy(), [yy + dy, xx + dx], order=1, mode="reflect")
            for c in range(3)
        ]
        assert np.allclose(out[i].numpy(), np.stack(expected), atol=1e-5)


def test_elastic_without_jitter_or_field_is_the_identity() -> None:
    clean = _images(2, 1, 8, 12)
    assert torch.allclose(elastic_transform(clean, (0.0, 0.0, 0.0, 32), torch.Generator()), clean, atol=1e-5)


def test_elastic_affine_moves_the_anchor_points() -> None:
    # as cv2.getAffineTransform(pts1, pts2) + warpAffine: a dot at an anchor of pts1 lands on its pts2
    jitter = 2.56  # CIFAR-C severity 1 (no displacement field)
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        moved = torch.tensor([26.0, 26.0]) + (torch.rand((1, 3, 2), generator=gen)[0, 0] * 2 - 1) * jitter
        clean = torch.zeros(1, 1, 32, 32)
        clean[0, 0, 26, 26] = 1.0  # anchor (x, y) = (16 + 10, 16 + 10)
        out = elastic_transform(clean, (0.0, 0.0, jitter, 32), torch.Generator().manual_seed(seed))[0, 0]
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        centroid = torch.stack(((out * xs).sum(), (out * ys).sum())) / out.sum()
        assert torch.allclose(centroid, moved, atol=0.2), (centroid, moved)


def test_elastic_local_field_grows_with_cifar_severity() -> None:
    # the CIFAR-C table trades the global affine jitter (2.56 -> 0.96 px) for a stronger local field
    clean = _images(2, 3, 32, 32)
    table = get_corruption("elastic_transform").cifar
    local = [
        float(
            (elastic_transform(clean, (a, s, 0.0, r), torch.Generator().manual_seed(1)) - clean).abs().mean()
        )
        for a, s, _, r in table
    ]
    assert local[0] < 1e-5 and all(a < b for a, b in itertools.pairwise(local)), local


def test_elastic_scales_with_the_image_size() -> None:
    # the same seed and table on a 2x up-sampled image gives the 2x up-sampled warp (up to resampling)
    small = gaussian_blur(_images(2, 3, 32, 32), 1.0)
    big = F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)
    warped_small = corrupt(small, "elastic_transform", 5, seed=4)
    warped_big = corrupt(big, "elastic_transform", 5, seed=4, table="cifar")
    gap = float((F.avg_pool2d(warped_big, 2) - warped_small).abs().mean())
    assert gap < 0.25 * float((warped_small - small).abs().mean())


def test_digital_runs_on_cuda_when_available() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    clean = _images(2, 3, 64, 64).cuda()
    for name in DIGITAL:
        out = corrupt(clean, name, 4, seed=0)
        assert out.device == clean.device and torch.equal(out, corrupt(clean, name, 4, seed=0))
        assert torch.allclose(out.cpu(), corrupt(clean.cpu(), name, 4, seed=0), atol=2e-3) or name in RANDOM
