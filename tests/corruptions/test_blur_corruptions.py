"""The blur family: the contract (shape, range, seeds, grayscale, sizes, tables) and the reference's maths
(ImageNet-C's ``disk`` + ``cv2.filter2D``, ``clipped_zoom``, ``skimage`` Gaussian, ImageMagick motion blur
and the sequential glass shuffle), checked against direct re-computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from calikd.corruptions import blur, corrupt, get_corruption, kernels, list_corruptions

BLURS = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur")
RANDOM = ("glass_blur", "motion_blur")


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A textured batch in [0, 1]: noise plus smooth structure, so that every blur changes it."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, c, h, w), generator=g)
    yy = torch.linspace(0, 3 * math.pi, h).view(h, 1)
    xx = torch.linspace(0, 2 * math.pi, w).view(1, w)
    smooth = 0.5 + 0.5 * torch.sin(yy + xx) * torch.cos(2 * xx)
    return (0.5 * noise + 0.5 * smooth).clamp(0, 1)


def _distortion(clean: torch.Tensor, name: str, severity: int, table: str = "auto") -> float:
    return float((corrupt(clean, name, severity, seed=3, table=table) - clean).abs().mean())


def test_registered_in_the_blur_family() -> None:
    for name in BLURS:
        corruption = get_corruption(name)
        assert corruption.family == "blur" and corruption.description
    assert set(BLURS[:4]) <= set(list_corruptions("benchmark"))
    assert "gaussian_blur" in list_corruptions("extra")


@pytest.mark.parametrize("name", BLURS)
def test_images_are_corrupted_independently(name: str) -> None:
    clean = _images(3, 3, 32, 32)
    together = corrupt(clean, name, 4, seed=0)
    if name not in RANDOM:
        assert torch.allclose(together[1:2], corrupt(clean[1:2], name, 4, seed=0), atol=1e-6)
    else:  # a random angle / shuffle per image
        assert not torch.equal(together[0], corrupt(clean[1:2], name, 4, seed=0)[0])


@pytest.mark.parametrize("name", BLURS)
@pytest.mark.parametrize(("size", "table"), [(32, "auto"), (64, "auto"), (32, "imagenet"), (64, "cifar")])
def test_distortion_grows_with_severity(name: str, size: int, table: str) -> None:
    clean = _images(4, 3, size, size)
    levels = [_distortion(clean, name, s, table) for s in (1, 2, 3, 4, 5)]
    assert levels[4] > levels[0] and sum(levels[3:]) > sum(levels[:2]), levels
    # glass_blur's tables trade blur for shuffling between some severities, and ImageNet's zoom table has
    # fewer, coarser factors at severity 3 than at 2: only the others grow at every step
    imagenet = table == "imagenet" or (table == "auto" and size > 32)
    if name != "glass_blur" and not (name == "zoom_blur" and imagenet):
        assert all(a <= b + 1e-6 for a, b in itertools.pairwise(levels)), levels


@pytest.mark.parametrize("name", BLURS)
def test_constant_images_stay_constant(name: str) -> None:
    clean = torch.full((2, 3, 16, 20), 0.6)
    out = corrupt(clean, name, 5, seed=0)
    assert torch.allclose(out, clean, atol=1.0 / 255 + 1e-6)  # glass_blur truncates to 8 bits once


# ---------------------------------------------------------------- defocus blur


def _reference_disk(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's ``disk``: a 17x17 (or 2r+1) disk, blurred by a 3- (5-) tap Gaussian, reflect-101."""
    ndi = pytest.importorskip("scipy.ndimage")
    half, taps = (8, 3) if radius <= 8 else (int(radius), 5)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    t = np.arange(taps) - (taps - 1) / 2
    g = np.exp(-(t**2) / (2 * alias_blur**2))
    g /= g.sum()
    disk = ndi.correlate1d(ndi.correlate1d(disk, g, axis=1, mode="mirror"), g, axis=0, mode="mirror")
    return disk / disk.sum()  # the reference leaves a sum of 1.011-1.013 at radius 8-10; renormalised here


@pytest.mark.parametrize(
    ("severity", "table", "size"), [(1, "cifar", 32), (4, "cifar", 32), (5, "cifar", 32), (3, "imagenet", 48)]
)
def test_defocus_matches_the_reference_filter(severity: int, table: str, size: int) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    clean = _images(2, 3, size, size)
    radius, alias_blur = get_corruption("defocus_blur").param(severity, table)
    kernel = _reference_disk(radius, alias_blur)
    expected = np.stack(
        [[ndi.correlate(ch, kernel, mode="mirror") for ch in img] for img in clean.double().numpy()]
    )  # cv2.filter2D: correlation with BORDER_REFLECT_101
    out = corrupt(clean, "defocus_blur", severity, table=table)
    assert np.abs(out.numpy() - np.clip(expected, 0, 1)).max() < 1e-5


def test_defocus_impulse_response_is_the_disk() -> None:
    impulse = torch.zeros(1, 1, 33, 33)
    impulse[0, 0, 16, 16] = 1.0
    out = blur.defocus_blur(impulse, (6, 0.5), torch.Generator())[0, 0]
    disk = blur.disk_kernel(6, 0.5)
    assert torch.allclose(out[8:25, 8:25], disk.flip(0, 1), atol=1e-7)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(out[16, 16 + 6]) > 0 and float(out[16, 16 + 8]) < 1e-3  # radius 6, barely beyond


# ---------------------------------------------------------------- glass blur


def _sequential_shuffle(x: np.ndarray, offsets: np.ndarray, max_delta: int) -> np.ndarray:
    """The reference loop, given its offsets: the tuple "swap" of RGB numpy views copies one way."""
    x = x.transpose(1, 2, 0).copy()  # H, W, C
    h_size, w_size = x.shape[:2]
    for h in range(h_size - max_delta, max_delta, -1):
        for w in range(w_size - max_delta, max_delta, -1):
            dy, dx = offsets[0, h, w], offsets[1, h, w]
            x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize(("max_delta", "size"), [(1, (10, 12)), (2, (12, 9)), (3, (16, 16)), (4, (20, 14))])
def test_glass_shuffle_equals_the_sequential_reference(max_delta: int, size: tuple[int, int]) -> None:
    h, w = size
    g = torch.Generator().manual_seed(max_delta)
    x = torch.rand(2, 3, h, w, generator=g)
    offsets = torch.randint(-max_delta, max_delta, (2, 2, h, w), generator=g)
    out = blur._glass_round(x, offsets, max_delta)
    for i in range(2):
        expected = _sequential_shuffle(x[i].numpy(), offsets[:, i].numpy(), max_delta)
        assert np.array_equal(out[i].numpy(), expected)


def test_glass_severity_one_only_moves_pixels_up_left_by_one() -> None:
    """CIFAR severity 1 (sigma 0.05: no blur): each pixel is its 8-bit value or an up/left neighbour's."""
    clean = _images(2, 3, 32, 32)
    out = corrupt(clean, "glass_blur", 1, seed=5)
    q = torch.floor(clean * 255) / 255
    assert torch.allclose(out[..., 0, :], q[..., 0, :]) and torch.allclose(out[..., :, 0], q[..., :, 0])
    inner = out[..., 2:, 2:]
    candidates = torch.stack([q[..., 2:, 2:], q[..., 1:-1, 2:], q[..., 2:, 1:-1], q[..., 1:-1, 1:-1]])
    match = (candidates - inner).abs().amax(dim=2) < 1e-6  # the whole pixel (all channels) comes along
    assert bool(match.any(dim=0).all())
    assert float((out - q).abs().mean()) > 0.01


def test_glass_distortion_matches_the_reference_loop() -> None:
    """Mean |corrupted - clean| of the parallel shuffle against the reference's sequential loop."""
    clean = _images(16, 3, 32, 32)
    sigma, max_delta, iterations = get_corruption("glass_blur").param(4, "cifar")
    rng = np.random.default_rng(0)
    q = (torch.floor(blur._gaussian_nearest(clean, sigma) * 255) / 255).numpy()
    ref = q
    for _ in range(iterations):
        ref = np.stack(
            [
                _sequential_shuffle(im, rng.integers(-max_delta, max_delta, size=(2, 32, 32)), max_delta)
                for im in ref
            ]
        )
    ref = blur._gaussian_nearest(torch.from_numpy(ref), sigma).clamp(0, 1)
    ours = corrupt(clean, "glass_blur", 4, seed=0)
    d_ref, d_ours = float((ref - clean).abs().mean()), float((ours - clean).abs().mean())
    assert d_ours == pytest.approx(d_ref, rel=0.03)


# ---------------------------------------------------------------- motion blur


def test_motion_blur_impulse_response_is_a_one_sided_gaussian_line() -> None:
    """ImageMagick: 2 ceil(r) + 1 taps, exp(-i^2 / 2 sigma^2) normalised, reading i pixels along the angle."""
    impulse = torch.zeros(1, 1, 9, 40)
    impulse[0, 0, 4, 30] = 1.0
    out = kernels.motion_blur_lines(impulse, 6, 2.0, torch.tensor([0.0]))[0, 0]
    i = torch.arange(13, dtype=torch.float64)
    weights = torch.exp(-(i**2) / 8.0)
    weights = (weights / weights.sum()).float()
    assert torch.allclose(out[4, 30 - 12 : 31].flip(0), weights, atol=1e-7)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6) and float(out[4, 31:].abs().sum()) == 0.0
    assert float(out[[0, 1, 2, 3, 5, 6, 7, 8]].abs().sum()) == 0.0


def _reference_motion(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """A pixel loop of ImageMagick's MotionBlurImage (edge virtual pixels)."""
    width = 2 * math.ceil(radius) + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    a = math.radians(angle)
    offs = [(math.ceil(i * math.cos(a) - 0.5), math.ceil(i * math.sin(a) - 0.5)) for i in range(width)]
    _, h, w = img.shape
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            for ki, (ox, oy) in zip(k, offs, strict=True):
                out[:, y, x] += ki * img[:, min(max(y + oy, 0), h - 1), min(max(x + ox, 0), w - 1)]
    return out


def test_motion_blur_matches_imagemagick_loop() -> None:
    clean = _images(3, 3, 12, 10).double()
    angles = torch.tensor([-45.0, 13.7, 38.2])
    out = kernels.motion_blur_lines(clean.float(), 6, 1.5, angles)
    for i in range(3):
        expected = _reference_motion(clean[i].numpy(), 6, 1.5, float(angles[i]))
        assert np.abs(out[i].numpy() - expected).max() < 1e-5


def test_motion_blur_angles_stay_within_45_degrees() -> None:
    """A vertical edge smears for every angle in [-45, 45] (never along it), a horizontal one less."""
    vertical = torch.zeros(64, 1, 32, 32)
    vertical[..., 16:] = 1.0
    out_v = corrupt(vertical, "motion_blur", 5, seed=1)
    out_h = corrupt(vertical.transpose(-1, -2).contiguous(), "motion_blur", 5, seed=1)
    changed_v = (out_v - vertical).abs().sum(dim=(1, 2, 3))
    changed_h = (out_h - vertical.transpose(-1, -2)).abs().sum(dim=(1, 2, 3))
    assert bool((changed_v > 0).all()) and bool((changed_v >= changed_h - 1e-4).all())


# ---------------------------------------------------------------- zoom blur


def _reference_clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """The reference's ``clipped_zoom`` (H, W, C), with each side's own length (it uses H for both)."""
    ndi = pytest.importorskip("scipy.ndimage")
    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = ndi.zoom(img[top : top + ch, left : left + cw], (factor, factor, 1), order=1)
    trim_h, trim_w = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[trim_h : trim_h + h, trim_w : trim_w + w]


@pytest.mark.parametrize(
    ("severity", "table", "size"),
    [(1, "cifar", (32, 32)), (5, "cifar", (32, 32)), (3, "imagenet", (56, 56)), (5, "cifar", (12, 20))],
)
def test_zoom_blur_matches_the_reference(severity: int, table: str, size: tuple[int, int]) -> None:
    clean = _images(2, 3, *size)
    factors = get_corruption("zoom_blur").param(severity, table)
    expected = []
    for img in clean.permute(0, 2, 3, 1).numpy():
        total = img + sum(_reference_clipped_zoom(img, z) for z in factors)
        expected.append(total / (len(factors) + 1))
    out = corrupt(clean, "zoom_blur", severity, table=table).permute(0, 2, 3, 1).numpy()
    assert np.abs(out - np.clip(np.stack(expected), 0, 1)).max() < 1e-5


def test_zoom_tables_are_the_reference_aranges() -> None:
    zoom = get_corruption("zoom_blur")
    assert [len(zoom.param(s, "cifar")) for s in (1, 2, 3, 4, 5)] == [7, 12, 16, 21, 26]
    assert [len(zoom.param(s, "imagenet")) for s in (1, 2, 3, 4, 5)] == [12, 16, 11, 13, 11]
    assert zoom.param(1, "cifar")[0] == 1.0 and zoom.param(5, "imagenet")[-1] == pytest.approx(1.30)


# ---------------------------------------------------------------- Gaussian blur


@pytest.mark.parametrize(
    ("severity", "table", "size"), [(1, "cifar", 32), (5, "cifar", 12), (4, "imagenet", 48)]
)
def test_gaussian_blur_matches_skimage_gaussian(severity: int, table: str, size: int) -> None:
    ndi = pytest.importorskip("scipy.ndimage")
    clean = _images(2, 3, size, size + 4)
    sigma = get_corruption("gaussian_blur").param(severity, table)
    expected = ndi.gaussian_filter(clean.double().numpy(), sigma=(0, 0, sigma, sigma), mode="nearest")
    out = corrupt(clean, "gaussian_blur", severity, table=table)
    assert np.abs(out.numpy() - np.clip(expected, 0, 1)).max() < 1e-5


# ---------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", BLURS)
def test_cuda_matches_cpu(name: str) -> None:
    clean = _images(4, 3, 32, 32)
    out = corrupt(clean.cuda(), name, 4, seed=1)
    assert out.device.type == "cuda" and out.shape == clean.shape
    assert torch.equal(out, corrupt(clean.cuda(), name, 4, seed=1))
    if name not in RANDOM:
        assert torch.allclose(out.cpu(), corrupt(clean, name, 4, seed=1), atol=1e-5)
