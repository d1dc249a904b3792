"""Blur corruptions: defocus, glass, motion and zoom blur (the benchmark's blur family), and Gaussian blur.

Every function re-implements, batched in torch, the maths of Hendrycks & Dietterich's reference
(``make_cifar_c.py`` for CIFAR-10-C, ``imagenet_c/corruptions.py`` for ImageNet-C) with the same severity
tables. Blur sizes (radius, sigma, shuffle distance) are in pixels of the table's resolution (32 px for the
CIFAR table, 224 px for ImageNet's) and are not rescaled to other sizes; zoom factors are relative, and the
zoom crop follows each side's own length, so non-square images work. Where this module departs from the
reference:

- ``glass_blur``: the reference shuffles pixels one at a time in a Python loop (about 20 ms per 32x32
  image). Its "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` acts on numpy views of RGB pixels and so
  *copies* ``x[h', w']`` into ``x[h, w]`` without swapping back: scanning from the bottom-right, each
  pixel takes the current value at a random offset in ``[-max_delta, max_delta)``. That process is
  reproduced exactly, in parallel: every pixel of the scanned region reads its offset neighbour, and
  reads that neighbour's new value where the scan has already rewritten it (chains, resolved by pointer
  doubling; none for ``max_delta = 1``). Only the random draws differ from numpy's. As in the reference,
  the first blur's result is truncated to 8 bits before the shuffle.
- ``gaussian_blur`` and the blurs of ``glass_blur`` replicate ``skimage.filters.gaussian`` exactly
  (``scipy.ndimage`` Gaussian of radius ``int(4 sigma + 0.5)``, ``nearest`` borders).
- ``defocus_blur``: the disk kernel is renormalised to sum to 1; the reference's anti-aliasing blur uses
  reflected borders and leaves its kernel summing to 1.011-1.013 at ImageNet severities 4-5 (a slight
  brightening that is not reproduced). Borders are reflected as ``cv2.filter2D``'s.
- ``motion_blur``: ImageMagick's ``MotionBlurImage`` exactly (``2 ceil(radius) + 1`` one-sided Gaussian taps
  at rounded offsets along the angle, edge pixels repeated beyond the border), in float instead of 8 bits.
- ``zoom_blur``: exactly the reference's ``clipped_zoom`` (integer centre crop, linear zoom with the
  corner-aligned grid of ``scipy.ndimage.zoom(order=1)``, integer trim), per side.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from calikd.corruptions.base import register_corruption
from calikd.corruptions.kernels import NEGLIGIBLE, disk_kernel, filter2d, motion_blur_lines

#: the reference's Gaussian (``skimage.filters.gaussian``) truncates at 4 sigma
_TRUNCATE = 4.0


def _gaussian_nearest(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``skimage.filters.gaussian``: separable Gaussian of radius ``int(4 sigma + 0.5)``, nearest borders."""
    radius = int(_TRUNCATE * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    weights = (k / k.sum()).tolist()
    h, w = x.shape[-2:]
    # weighted sums of shifted slices: exact, and on CPU far faster than a 1-channel conv2d
    padded = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = padded[..., :, 0:w] * weights[0]
    for i in range(1, 2 * radius + 1):
        out.add_(padded[..., :, i : i + w], alpha=weights[i])
    padded = F.pad(out, (0, 0, radius, radius), mode="replicate")
    out = padded[..., 0:h, :] * weights[0]
    for i in range(1, 2 * radius + 1):
        out.add_(padded[..., i : i + h, :], alpha=weights[i])
    return out


def _support(kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` with its negligible entries (< 1e-12, e.g. the tails of a narrow anti-aliasing Gaussian,
    which would be slow subnormal floats) zeroed and its all-zero border rows and columns cropped (kept odd
    and centred): the same filter at a fraction of the cost."""
    kernel = torch.where(kernel.abs() < NEGLIGIBLE, torch.zeros_like(kernel), kernel)
    half = kernel.shape[-1] // 2
    nonzero = kernel.nonzero()
    if nonzero.numel() == 0:
        return kernel
    reach = int((nonzero - half).abs().max())
    return kernel[half - reach : half + reach + 1, half - reach : half + reach + 1]


def _glass_round(x: torch.Tensor, offsets: torch.Tensor, max_delta: int) -> torch.Tensor:
    """One round of the reference's pixel shuffle, in parallel, given the offsets ``(2, N, H, W)`` (dy, dx).

    The reference scans the pixels ``(h, w)`` with ``max_delta < h <= H - max_delta`` (and likewise ``w``)
    from the bottom-right, and each takes the *current* value at ``(h + dy, w + dx)``: the original one,
    unless that pixel was rewritten earlier in the scan (it lies in the scanned region and after ``(h, w)`` in
    raster order), in which case its new value. These chains are resolved by pointer doubling.
    """
    n, c, h, w = x.shape
    device = x.device
    rows = torch.arange(h, device=device).view(h, 1)
    cols = torch.arange(w, device=device).view(1, w)

    def scanned(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return (r > max_delta) & (r <= h - max_delta) & (q > max_delta) & (q <= w - max_delta)

    inside = scanned(rows, cols)
    ty = torch.where(inside, rows + offsets[0], rows)
    tx = torch.where(inside, cols + offsets[1], cols)
    source = (ty * w + tx).reshape(n, h * w)
    # follow[p]: p copies a pixel that the scan has already rewritten, so its value is that pixel's result
    follow = (scanned(ty, tx) & (ty * w + tx > rows * w + cols) & inside).reshape(n, h * w)
    while bool(follow.any()):
        nxt_source, nxt_follow = source.gather(1, source), follow.gather(1, source)
        source = torch.where(follow, nxt_source, source)
        follow = follow & nxt_follow
    flat = x.reshape(n, c, h * w)
    return flat.gather(2, source.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


def _glass_shuffle(x: torch.Tensor, max_delta: int, iterations: int, gen: torch.Generator) -> torch.Tensor:
    """``iterations`` rounds of local shuffling, offsets uniform in ``[-max_delta, max_delta)`` per pixel."""
    n, _, h, w = x.shape
    for _ in range(iterations):
        offsets = torch.randint(-max_delta, max_delta, (2, n, h, w), generator=gen, device=x.device)
        x = _glass_round(x, offsets, max_delta)
    return x


def _zoom_geometry(size: int, factor: float) -> tuple[int, int, int, int]:
    """``(top, crop, zoomed, trim)`` of the reference's ``clipped_zoom`` along a side of ``size`` pixels."""
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    zoomed = round(crop * factor)
    trim = (zoomed - size) // 2
    return top, crop, zoomed, trim


def _clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` and crop back to ``H x W`` (bilinear, corner-aligned grid)."""
    h, w = x.shape[-2:]
    top_h, crop_h, out_h, trim_h = _zoom_geometry(h, factor)
    top_w, crop_w, out_w, trim_w = _zoom_geometry(w, factor)
    crop = x[..., top_h : top_h + crop_h, top_w : top_w + crop_w]
    if (out_h, out_w) != (crop_h, crop_w):
        crop = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    return crop[..., trim_h : trim_h + h, trim_w : trim_w + w]


def _zoom_factors(stop: float, step: float) -> tuple[float, ...]:
    """The reference's zoom factors, ``np.arange(1, stop, step)`` (float end points included)."""
    return tuple(float(z) for z in np.arange(1, stop, step))


@register_corruption(
    "defocus_blur",
    family="blur",
    cifar=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    imagenet=((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
)
def defocus_blur(images: torch.Tensor, param: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Defocus blur: every channel filtered with an anti-aliased disk of the given radius."""
    radius, alias_blur = param
    return filter2d(images, _support(disk_kernel(radius, alias_blur, device=images.device)))


@register_corruption(
    "glass_blur",
    family="blur",
    cifar=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    imagenet=((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
)
def glass_blur(images: torch.Tensor, param: tuple[float, int, int], gen: torch.Generator) -> torch.Tensor:
    """Glass blur: Gaussian blur, local shuffling of pixels as behind frosted glass, blur again.

    ``param`` is ``(sigma, max_delta, iterations)``; each round is the reference's sequential shuffle, run in
    parallel (see the module docstring).
    """
    sigma, max_delta, iterations = param
    x = _gaussian_nearest(images, sigma)
    x = torch.floor(x.clamp(0.0, 1.0) * 255.0) / 255.0  # the reference stores this stage as uint8
    x = _glass_shuffle(x, int(max_delta), int(iterations), gen)
    return _gaussian_nearest(x, sigma)


@register_corruption(
    "motion_blur",
    family="blur",
    cifar=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    imagenet=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
)
def motion_blur(images: torch.Tensor, param: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Motion blur: ImageMagick's one-sided motion blur at a random angle in [-45, 45] degrees per image.

    ``param`` is ImageMagick's ``(radius, sigma)``.
    """
    radius, sigma = param
    angles = torch.rand(images.shape[0], generator=gen, device=images.device) * 90.0 - 45.0
    return motion_blur_lines(images, radius, sigma, angles)


@register_corruption(
    "zoom_blur",
    family="blur",
    cifar=tuple(_zoom_factors(stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)),
    imagenet=(
        _zoom_factors(1.11, 0.01),
        _zoom_factors(1.16, 0.01),
        _zoom_factors(1.21, 0.02),
        _zoom_factors(1.26, 0.02),
        _zoom_factors(1.31, 0.03),
    ),
)
def zoom_blur(images: torch.Tensor, param: tuple[float, ...], gen: torch.Generator) -> torch.Tensor:
    """Zoom blur: the mean of the image and its centre-zoomed copies, as when zooming during the exposure.

    ``param`` holds the zoom factors (from 1); the crop and zoom follow each side's length.
    """
    out = images.clone()
    for factor in param:
        out += _clipped_zoom(images, float(factor))
    return out / (len(param) + 1)


@register_corruption(
    "gaussian_blur",
    family="blur",
    cifar=(0.4, 0.6, 0.7, 0.8, 1.0),
    imagenet=(1, 2, 3, 4, 6),
    benchmark=False,
)
def gaussian_blur(images: torch.Tensor, param: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur of the given standard deviation (pixels), as ``skimage.filters.gaussian``."""
    return _gaussian_nearest(images, float(param))
