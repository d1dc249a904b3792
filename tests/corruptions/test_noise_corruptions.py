"""The noise family: the contract (shape, range, seeds, grayscale, sizes, tables) and the reference's
statistics."""

from __future__ import annotations

import itertools

import pytest
import torch

from calikd.corruptions import corrupt, get_corruption, list_corruptions

NOISES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A textured batch in [0.1, 0.9]: mid-tones, so that clipping barely touches the noise."""
    g = torch.Generator().manual_seed(seed)
    return 0.1 + 0.8 * torch.rand((n, c, h, w), generator=g)


def _distortion(clean: torch.Tensor, name: str, severity: int, table: str = "auto") -> float:
    return float((corrupt(clean, name, severity, seed=3, table=table) - clean).abs().mean())


def test_registered_in_the_noise_family() -> None:
    for name in NOISES:
        assert get_corruption(name).family == "noise"
    assert set(NOISES[:3]) <= set(list_corruptions("benchmark"))
    assert "speckle_noise" in list_corruptions("extra")


@pytest.mark.parametrize("name", NOISES)
def test_channels_and_images_get_independent_noise(name: str) -> None:
    clean = torch.full((2, 3, 32, 32), 0.5)
    residual = corrupt(clean, name, 5, seed=0) - clean
    assert not torch.equal(residual[:, 0], residual[:, 1])
    assert not torch.equal(residual[0], residual[1])


@pytest.mark.parametrize("name", NOISES)
@pytest.mark.parametrize(("size", "table"), [(32, "auto"), (64, "auto"), (32, "imagenet"), (64, "cifar")])
def test_distortion_grows_with_severity(name: str, size: int, table: str) -> None:
    clean = _images(4, 3, size, size)
    levels = [_distortion(clean, name, s, table) for s in (1, 2, 3, 4, 5)]
    assert all(a < b for a, b in itertools.pairwise(levels)), levels


def test_gaussian_noise_std_is_the_tables_sigma() -> None:
    clean = torch.full((4, 3, 32, 32), 0.5)
    for severity, sigma in zip((1, 3, 5), (0.04, 0.08, 0.10), strict=True):
        residual = corrupt(clean, "gaussian_noise", severity, seed=1) - clean
        assert float(residual.mean()) == pytest.approx(0.0, abs=0.005)
        assert float(residual.std()) == pytest.approx(sigma, rel=0.04)
    big = torch.full((2, 1, 64, 64), 0.5)  # > 32 px: ImageNet-C's table, sigma 0.08 at severity 1
    assert float((corrupt(big, "gaussian_noise", 1, seed=1) - big).std()) == pytest.approx(0.08, rel=0.04)
    assert float((corrupt(big, "gaussian_noise", 1, seed=1, table="cifar") - big).std()) == pytest.approx(
        0.04, rel=0.04
    )


def test_shot_noise_is_poisson_counts_over_photons() -> None:
    clean = torch.full((4, 3, 32, 32), 0.5)
    photons = 50  # CIFAR-C severity 5
    out = corrupt(clean, "shot_noise", 5, seed=2)
    counts = out * photons
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # integer photon counts
    assert float(out.mean()) == pytest.approx(0.5, abs=0.005)
    assert float(out.var()) == pytest.approx(0.5 / photons, rel=0.06)  # Poisson: var = rate / photons^2


def test_impulse_noise_is_salt_and_pepper_at_the_tables_amount() -> None:
    clean = torch.full((4, 3, 64, 64), 0.5)
    amount = 0.27  # ImageNet-C severity 5
    out = corrupt(clean, "impulse_noise", 5, seed=4)
    salt, pepper = float((out == 1).float().mean()), float((out == 0).float().mean())
    assert salt == pytest.approx(amount / 2, abs=0.01) and pepper == pytest.approx(amount / 2, abs=0.01)
    assert torch.equal(out[(out != 0) & (out != 1)], clean[(out != 0) & (out != 1)])  # the rest untouched


def test_speckle_noise_scales_with_brightness() -> None:
    dark, bright = torch.full((4, 3, 32, 32), 0.2), torch.full((4, 3, 32, 32), 0.8)
    sigma = 0.20  # CIFAR-C severity 5
    assert float((corrupt(dark, "speckle_noise", 5, seed=5) - dark).std()) == pytest.approx(
        0.2 * sigma, rel=0.05
    )
    # 0.8 + 0.8 * N(0, 0.2) clips above 1 sometimes: compare the unclipped lower half only
    residual = corrupt(bright, "speckle_noise", 5, seed=5) - bright
    assert float(residual[residual < 0].mean()) == pytest.approx(
        -0.8 * sigma * (2 / torch.pi) ** 0.5, rel=0.05
    )
    black = torch.zeros(1, 1, 16, 16)
    assert torch.equal(corrupt(black, "speckle_noise", 5), black)


def test_runs_on_cuda_when_available() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    clean = _images(2, 3, 32, 32).cuda()
    for name in NOISES:
        out = corrupt(clean, name, 4, seed=0)
        assert out.device == clean.device and torch.equal(out, corrupt(clean, name, 4, seed=0))
