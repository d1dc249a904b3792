"""Filters shared by the corruptions: Gaussian, disk and motion kernels, and batched 2-D filtering.

Every filter works on a float batch ``(N, C, H, W)``, channel by channel, with reflected borders (as
``scipy.ndimage`` / ``cv2`` default to in the reference implementation), on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(
    sigma: float, *, truncate: float = 4.0, device: torch.device | None = None
) -> torch.Tensor:
    """Normalised 1-D Gaussian of std ``sigma`` with radius ``ceil(truncate * sigma)`` (scipy's default)."""
    radius = max(1, math.ceil(truncate * float(sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def _pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if ph < h and pw < w:
        return F.pad(x, (pw, pw, ph, ph), mode="reflect")
    return F.pad(x, (pw, pw, ph, ph), mode="replicate")  # reflect needs padding < size


def gaussian_blur(x: torch.Tensor, sigma: float, *, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of every channel (std ``sigma`` pixels); ``sigma <= 0`` returns ``x``."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, truncate=truncate, device=x.device).to(x.dtype)
    r = k.numel() // 2
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(_pad(flat, 0, r), k.view(1, 1, 1, -1))
    flat = F.conv2d(_pad(flat, r, 0), k.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def _sampled_gaussian(ksize: int, sigma: float, device: torch.device | None) -> torch.Tensor:
    """A ``ksize``-tap Gaussian of std ``sigma`` (the fixed-size kernel of ``cv2.GaussianBlur``)."""
    x = torch.arange(ksize, dtype=torch.float32, device=device) - (ksize - 1) / 2
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def disk_kernel(radius: float, alias_blur: float, device: torch.device | None = None) -> torch.Tensor:
    """A normalised disk of ``radius`` pixels on a 17x17 grid (``2 ceil(r) + 1`` beyond radius 8), smoothed by
    a 3-tap (5-tap beyond radius 8) Gaussian of std ``alias_blur``: ImageNet-C's defocus kernel."""
    half = 8 if radius <= 8 else math.ceil(radius)
    ax = torch.arange(-half, half + 1, dtype=torch.float32, device=device)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).float()
    disk = disk / disk.sum()
    if alias_blur > 0:
        g = _sampled_gaussian(3 if radius <= 8 else 5, alias_blur, device)
        r = g.numel() // 2
        img = disk.view(1, 1, *disk.shape)
        img = F.conv2d(_pad(img, 0, r), g.view(1, 1, 1, -1))
        img = F.conv2d(_pad(img, r, 0), g.view(1, 1, -1, 1))
        disk = img.view(disk.shape)
    return disk / disk.sum()


def motion_kernels(radius: int, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """One motion-blur kernel per angle, shape ``(N, 2r+1, 2r+1)``: a one-sided line of Gaussian weights
    (std ``sigma``) from the centre along ``angle`` (degrees), bilinearly splatted and normalised, as
    ImageMagick's ``-motion-blur radius x sigma + angle`` that ImageNet-C uses."""
    device = angles_deg.device
    size = 2 * radius + 1
    n = angles_deg.numel()
    steps = torch.arange(0, radius + 1, dtype=torch.float32, device=device)
    weights = torch.exp(-0.5 * (steps / max(float(sigma), 1e-6)) ** 2)
    theta = torch.deg2rad(angles_deg.float().view(n, 1))
    px = radius + steps.view(1, -1) * torch.cos(theta)
    py = radius + steps.view(1, -1) * torch.sin(theta)
    kernel = torch.zeros(n, size * size, dtype=torch.float32, device=device)
    x0, y0 = px.floor(), py.floor()
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            w = (1 - (px - xi).abs()) * (1 - (py - yi).abs()) * weights.view(1, -1)
            ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size) & (w > 0)
            idx = (yi.clamp(0, size - 1) * size + xi.clamp(0, size - 1)).long()
            kernel.scatter_add_(1, idx, torch.where(ok, w, torch.zeros_like(w)))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    return kernel.view(n, size, size)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` with ``kernel``: one ``(kh, kw)`` kernel for the batch, or one per
    image ``(N, kh, kw)`` (odd sizes), with reflected borders."""
    n, c, h, w = x.shape
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    kh, kw = kernel.shape[-2:]
    padded = _pad(x, kh // 2, kw // 2)
    if kernel.dim() == 2:
        flat = padded.reshape(n * c, 1, *padded.shape[-2:])
        return F.conv2d(flat, kernel.view(1, 1, kh, kw)).reshape(n, c, h, w)
    if kernel.shape[0] != n:
        raise ValueError(f"{kernel.shape[0]} kernels for {n} images")
    weight = kernel.repeat_interleave(c, dim=0).view(n * c, 1, kh, kw)
    out = F.conv2d(padded.reshape(1, n * c, *padded.shape[-2:]), weight, groups=n * c)
    return out.reshape(n, c, h, w)
