"""The noise family: Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise, plus speckle noise.

Each draws independent noise per pixel and channel from the corruption's generator, as the reference does per
array element, so a grayscale image gets one noise draw per pixel. Impulse noise follows
``skimage.util.random_noise(mode="s&p", amount=p)`` in its current form: every element is replaced with
probability ``p``, by 0 or 1 with equal odds (older scikit-image drew exactly ``ceil(p * size / 2)``
positions per kind instead; the expected number of replaced elements is the same).
"""

from __future__ import annotations

import torch

from calikd.corruptions.base import register_corruption


@register_corruption(
    "gaussian_noise",
    family="noise",
    cifar=(0.04, 0.06, 0.08, 0.09, 0.10),
    imagenet=(0.08, 0.12, 0.18, 0.26, 0.38),
)
def gaussian_noise(images: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise of std ``sigma`` on every pixel and channel."""
    noise = torch.randn(images.shape, generator=gen, device=images.device, dtype=images.dtype)
    return images + float(sigma) * noise


@register_corruption(
    "shot_noise",
    family="noise",
    cifar=(500, 250, 100, 75, 50),
    imagenet=(60, 25, 12, 5, 3),
)
def shot_noise(images: torch.Tensor, photons: float, gen: torch.Generator) -> torch.Tensor:
    """Poisson (photon) noise: ``Poisson(x * photons) / photons``, stronger for fewer photons."""
    rate = float(photons)
    return torch.poisson(images * rate, generator=gen) / rate


@register_corruption(
    "impulse_noise",
    family="noise",
    cifar=(0.01, 0.02, 0.03, 0.05, 0.07),
    imagenet=(0.03, 0.06, 0.09, 0.17, 0.27),
)
def impulse_noise(images: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper noise: each pixel and channel turns black or white (half each) w.p. ``amount``."""
    u = torch.rand(images.shape, generator=gen, device=images.device, dtype=images.dtype)
    p = float(amount)
    out = torch.where(u < p, torch.ones_like(images), images)
    return torch.where(u < 0.5 * p, torch.zeros_like(images), out)


@register_corruption(
    "speckle_noise",
    family="noise",
    cifar=(0.06, 0.10, 0.12, 0.16, 0.20),
    imagenet=(0.15, 0.20, 0.35, 0.45, 0.60),
    benchmark=False,
)
def speckle_noise(images: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Multiplicative Gaussian noise: ``x + x * N(0, sigma)``, strongest on bright pixels."""
    noise = torch.randn(images.shape, generator=gen, device=images.device, dtype=images.dtype)
    return images + images * float(sigma) * noise
