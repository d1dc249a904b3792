"""The digital family: brightness, contrast, elastic transform, pixelate and JPEG compression, plus saturate.

Fidelity to the reference (``make_cifar_c.py`` / ``imagenet_c/corruptions.py``) and deviations:

- ``brightness`` / ``saturate`` use the scikit-image HSV conventions (:mod:`calikd.corruptions.color`). On a
  grayscale batch (``C = 1``) the channel is the HSV value with zero saturation: brightness adds to it and
  saturate is the identity (a grey RGB image is not: its zero hue turns red when saturate adds ``c1 > 0``,
  as in the reference).
- ``contrast`` uses per-channel means over the pixels, as the reference (``np.mean(x, axis=(0, 1))`` over an
  ``(H, W, C)`` array), so every channel and hence the per-image mean are kept before clipping.
- ``elastic_transform`` composes the random affine and the displacement field into ONE bilinear resampling
  (the reference resamples twice: ``cv2.warpAffine``, then ``map_coordinates``), so it blurs slightly less;
  its borders reflect about the pixel edges (scipy's ``reflect``) where ``warpAffine`` used ``REFLECT_101``.
  Sizes are scaled as described in :func:`elastic_transform`.
- ``pixelate`` reproduces Pillow's ``BOX`` resize weights exactly but stays in float (the reference rounds
  to uint8 after each resize).
- ``jpeg_compression`` runs Pillow's encoder image by image (the only per-image loop of the corruptions);
  its output is quantised to 1/255 as the reference's is.

As in the reference tables, two of these do not change pixels more at each severity: ``saturate``
(severities 1-2 desaturate, 3-5 over-saturate) and ``elastic_transform`` (the CIFAR table trades a shrinking
affine jitter for a growing local field; the ImageNet one peaks at severity 2).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from calikd.corruptions.base import register_corruption
from calikd.corruptions.color import hsv_to_rgb, rgb_to_hsv

# ----------------------------------------------------------------------------------------- colour --


@register_corruption(
    "brightness",
    family="digital",
    cifar=(0.05, 0.1, 0.15, 0.2, 0.3),
    imagenet=(0.1, 0.2, 0.3, 0.4, 0.5),
)
def brightness(images: torch.Tensor, shift: float, gen: torch.Generator) -> torch.Tensor:
    """Brighten: add ``shift`` to the HSV value (capped at 1), keeping hue and saturation."""
    if images.shape[1] == 1:
        return (images + float(shift)).clamp(max=1.0)
    hsv = rgb_to_hsv(images)
    value = (hsv[:, 2:3] + float(shift)).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.cat((hsv[:, :2], value), dim=1))


@register_corruption(
    "saturate",
    family="digital",
    cifar=((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
    imagenet=((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
    benchmark=False,
)
def saturate(images: torch.Tensor, param: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Change colour saturation: HSV saturation ``* c0 + c1`` (identity on grayscale images)."""
    if images.shape[1] == 1:
        return images.clone()
    scale, offset = (float(p) for p in param)
    hsv = rgb_to_hsv(images)
    sat = (hsv[:, 1:2] * scale + offset).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.cat((hsv[:, :1], sat, hsv[:, 2:]), dim=1))


@register_corruption(
    "contrast",
    family="digital",
    cifar=(0.75, 0.5, 0.4, 0.3, 0.15),
    imagenet=(0.4, 0.3, 0.2, 0.1, 0.05),
)
def contrast(images: torch.Tensor, factor: float, gen: torch.Generator) -> torch.Tensor:
    """Lower the contrast: ``(x - mean) * factor + mean``, with each image's per-channel mean."""
    means = images.mean(dim=(2, 3), keepdim=True)
    return (images - means) * float(factor) + means


# ------------------------------------------------------------------------------------ pixelate --


def _pil_box_weights(in_size: int, out_size: int) -> torch.Tensor:
    """The ``(out_size, in_size)`` resampling matrix of Pillow's ``BOX`` filter (``precompute_coeffs``):
    output pixel ``i`` averages the input pixels whose centres fall in its footprint ``(i + 1/2) * scale
    +- scale / 2``; when enlarging, this is nearest-neighbour."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    xmin = torch.floor(centre - support + 0.5).clamp(min=0).unsqueeze(1)
    xmax = torch.floor(centre + support + 0.5).clamp(max=in_size).unsqueeze(1)
    j = torch.arange(in_size, dtype=torch.float64).unsqueeze(0)
    arg = (j - centre.unsqueeze(1) + 0.5) / filterscale
    weights = ((arg > -0.5) & (arg <= 0.5) & (j >= xmin) & (j < xmax)).double()
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)


@register_corruption(
    "pixelate",
    family="digital",
    cifar=(0.95, 0.9, 0.85, 0.75, 0.65),
    imagenet=(0.6, 0.5, 0.4, 0.3, 0.25),
)
def pixelate(images: torch.Tensor, factor: float, gen: torch.Generator) -> torch.Tensor:
    """Pixelate: box down-sample to ``int(size * factor)`` pixels a side, then box up-sample back.

    The same two resizes as the reference's ``PIL.Image.resize(..., BOX)``, applied as one matrix per axis.
    """
    h, w = images.shape[-2:]
    small_h, small_w = max(1, int(h * float(factor))), max(1, int(w * float(factor)))
    rows = _pil_box_weights(small_h, h) @ _pil_box_weights(h, small_h)
    cols = _pil_box_weights(small_w, w) @ _pil_box_weights(w, small_w)
    rows = rows.to(device=images.device, dtype=images.dtype)
    cols = cols.to(device=images.device, dtype=images.dtype)
    return torch.einsum("ij,ncjk,lk->ncil", rows, images, cols)


# -------------------------------------------------------------------------------------- JPEG --


@register_corruption(
    "jpeg_compression",
    family="digital",
    cifar=(80, 65, 58, 50, 40),
    imagenet=(25, 18, 15, 10, 7),
)
def jpeg_compression(images: torch.Tensor, quality: int, gen: torch.Generator) -> torch.Tensor:
    """JPEG-compress each image with Pillow at ``quality`` (grayscale as mode ``L``) and decode it again."""
    pixels = (images * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    mode = "L" if images.shape[1] == 1 else "RGB"
    decoded = []
    for img in pixels:
        buffer = io.BytesIO()
        Image.fromarray(img[..., 0] if mode == "L" else img, mode=mode).save(
            buffer, format="JPEG", quality=int(quality)
        )
        buffer.seek(0)
        with Image.open(buffer) as jpeg:
            decoded.append(np.asarray(jpeg.convert(mode)).reshape(img.shape))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)
    return out.to(device=images.device, dtype=images.dtype) / 255.0


# ------------------------------------------------------------------------------------- elastic --


def _gaussian_reflect(field: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(field, sigma, mode="reflect", truncate=truncate)`` over the last two
    dims, for any radius: the mirrored extension is ``2n``-periodic, so the filter is a circular
    convolution of ``[x, flip(x)]`` with the kernel wrapped modulo ``2n``, done with FFTs."""
    if sigma <= 0:
        return field
    radius = int(truncate * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=field.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    for dim in (-1, -2):
        n = field.shape[dim]
        wrapped = torch.zeros(2 * n, dtype=torch.float64, device=field.device)
        wrapped.index_add_(0, torch.remainder(taps.long(), 2 * n), kernel)
        spectrum = torch.fft.rfft(wrapped).to(torch.complex64)
        if dim == -2:
            spectrum = spectrum.unsqueeze(-1)
        extended = torch.cat((field, field.flip(dim)), dim=dim)
        filtered = torch.fft.irfft(torch.fft.rfft(extended, dim=dim) * spectrum, n=2 * n, dim=dim)
        field = filtered.narrow(dim, 0, n)
    return field


@register_corruption(
    "elastic_transform",
    family="digital",
    # (alpha, sigma, affine jitter) in pixels of a reference image of the last size (32 or 224 px);
    # the ImageNet-C entries keep the reference's "244" (a typo for 224 that defines the released set)
    cifar=(
        (32 * 0.0, 32 * 0.0, 32 * 0.08, 32),
        (32 * 0.05, 32 * 0.2, 32 * 0.07, 32),
        (32 * 0.08, 32 * 0.06, 32 * 0.06, 32),
        (32 * 0.1, 32 * 0.04, 32 * 0.05, 32),
        (32 * 0.1, 32 * 0.03, 32 * 0.03, 32),
    ),
    imagenet=(
        (244 * 2, 244 * 0.7, 244 * 0.1, 224),
        (244 * 2, 244 * 0.08, 244 * 0.2, 224),
        (244 * 0.05, 244 * 0.01, 244 * 0.02, 224),
        (244 * 0.07, 244 * 0.01, 244 * 0.02, 224),
        (244 * 0.12, 244 * 0.01, 244 * 0.02, 224),
    ),
)
def elastic_transform(
    images: torch.Tensor, param: tuple[float, float, float, int], gen: torch.Generator
) -> torch.Tensor:
    """Elastic warp: a random affine jitter plus a Gaussian-smoothed random displacement field.

    As the reference: three points at ``+-(ref // 3)`` around the centre move by ``U(-jitter, jitter)`` each,
    defining an affine map; then every pixel moves by ``alpha * gaussian_filter(U(-1, 1), sigma)`` along each
    axis (filter truncated at 3 sigma, reflected borders); bilinear sampling with reflected borders.

    Size scaling: the parameters are in pixels of a ``ref``-pixel square image (32 for the CIFAR table, 224
    for the ImageNet one). With ``k = min(H, W) / ref``, the jitter and the square scale by ``k``; the
    displacement field is drawn and smoothed at ``ref`` pixels along the short side (exactly the reference's
    field on a ``ref``-pixel image), scaled by ``k`` and sampled bilinearly at the image's pixel centres,
    so that the warp is the reference's in relative coordinates whatever the resolution.
    """
    alpha, sigma, jitter, ref = (float(p) for p in param)
    n, _, h, w = images.shape
    device = images.device
    k = min(h, w) / ref

    # random affine: maps the moved points (pts2) back to the original ones (pts1): a pull-back map
    cx, cy, half = float(w // 2), float(h // 2), (ref // 3) * k
    pts1 = torch.tensor(
        [[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], device=device
    ).expand(n, 3, 2)
    pts2 = pts1 + (torch.rand((n, 3, 2), generator=gen, device=device) * 2 - 1) * (jitter * k)
    homogeneous = torch.cat((pts2, torch.ones((n, 3, 1), device=device)), dim=2)
    pull_back = torch.linalg.solve(homogeneous.double(), pts1.double()).float()  # (n, 3, 2)

    # displacement field at the reference resolution, in image pixels
    field_h, field_w = max(1, round(h / k)), max(1, round(w / k))
    noise = torch.rand((n, 2, field_h, field_w), generator=gen, device=device) * 2 - 1
    field = _gaussian_reflect(noise, sigma) * (alpha * k)
    if (field_h, field_w) != (h, w):
        field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)

    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    moved = torch.stack((xs + field[:, 0], ys + field[:, 1], torch.ones_like(field[:, 0])), dim=-1)
    source = moved.reshape(n, h * w, 3) @ pull_back  # (n, h*w, 2) source pixel (x, y)
    scale = torch.tensor([2.0 / w, 2.0 / h], device=device)
    grid = ((source + 0.5) * scale - 1).reshape(n, h, w, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
