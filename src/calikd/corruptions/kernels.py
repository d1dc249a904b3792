"""Filters shared by the corruptions: Gaussian, disk and motion kernels, and batched 2-D filtering.

Every filter works on a float batch ``(N, C, H, W)``, channel by channel, on any device. ``gaussian_blur``
and ``filter2d`` reflect at the borders (``cv2``'s default); ``skimage``-based steps of the reference use
``nearest`` borders and are re-implemented where they are used (see :mod:`calikd.corruptions.blur`).
``motion_blur_lines`` is ImageMagick's motion blur, which the reference calls through Wand.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: filter weights below this are dropped (no effect in float32; avoids slow subnormal arithmetic)
NEGLIGIBLE = 1e-12


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
    disk = torch.where(disk < NEGLIGIBLE, torch.zeros_like(disk), disk)  # no slow subnormal arithmetic
    return disk / disk.sum()


def motion_blur_lines(x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur, one angle per image: ``out(y, x) = sum_i w_i in(y + dy_i, x + dx_i)`` over
    ``i = 0 .. 2 ceil(radius)``, ``w_i`` a normalised one-sided Gaussian of std ``sigma`` and
    ``(dx_i, dy_i)`` = ``i (cos a, sin a)`` rounded; pixels beyond the border repeat the edge."""
    n, c, h, w = x.shape
    steps = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    weights = torch.exp(-(steps**2) / (2.0 * max(float(sigma), 1e-12) ** 2))
    weights = (weights / weights.sum()).tolist()
    taps = sum(1 for wt in weights if wt >= NEGLIGIBLE)  # the weights decrease along the line
    steps = steps[:taps].to(device=x.device, dtype=torch.float32)
    theta = torch.deg2rad(angles_deg.to(device=x.device, dtype=torch.float32)).view(n, 1)
    dx = torch.ceil(steps * torch.cos(theta) - 0.5).long()  # (n, taps): rounded to nearest, as ImageMagick
    dy = torch.ceil(steps * torch.sin(theta) - 0.5).long()
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for t in range(taps):
        yy = (rows + dy[:, t].view(n, 1, 1)).clamp_(0, h - 1)
        xx = (cols + dx[:, t].view(n, 1, 1)).clamp_(0, w - 1)
        idx = (yy * w + xx).view(n, 1, h * w).expand(n, c, h * w)
        out.add_(flat.gather(2, idx), alpha=weights[t])
    return out.view(n, c, h, w)


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
