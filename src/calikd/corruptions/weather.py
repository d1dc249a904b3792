"""Weather corruptions: snow, frost, fog (benchmark) and spatter (extra), batched in torch.

They follow ImageNet-C's maths (``imagenet_c/corruptions.py`` and ``create_c/make_cifar_c.py`` of
Hendrycks & Dietterich), with these deviations:

* **frost**: the reference blends each image with a random crop of one of its frost photographs (only the
  first five are ever drawn), which calikd does not ship. Here each image gets its own procedural frost
  texture (:func:`calikd.corruptions.textures.frost_texture`: plasma clouds, grain and branching ice
  needles, mean brightness 0.4-0.5 like the photographs), blended with the same ``(image weight, frost
  weight)`` table. Results therefore differ from the released CIFAR-10-C / ImageNet-C frost sets, in texture
  though not in strength; the needle trees scale with the image size (the reference crops CIFAR's frost from
  photographs shrunk five times, ImageNet's from the full-size ones).
* **snow**: the snow layer is motion-blurred by :func:`~calikd.corruptions.kernels.motion_blur_lines`
  (ImageMagick's motion blur, one random angle in ``[-135, -45]`` degrees per image), and the layer is not
  quantised to 8 bits.
* **fog**: the diamond-square map is drawn at the next power of two ``>= max(H, W)`` and cropped to the image
  (the reference: 32 for CIFAR, 256 cropped to 224 for ImageNet, i.e. the same rule), one map per image.
* **spatter** (water, severities 1-3): OpenCV's Canny edge detector is re-implemented in torch (Sobel with
  replicated borders, L1 magnitude, non-maximum suppression in four directions, thresholds 50 / 150,
  hysteresis by iterated 3x3 dilation), its distance transform is the same 5x5 chamfer distance (weights
  1, 1.4, 2.1969) computed by iterated min-plus filtering up to the truncation at 20 px, and histogram
  equalisation is the same rank lookup table. Its Gaussian blurs reflect at the borders where skimage's
  (the reference's) repeat the edge pixels.

Flake, blur and droplet sizes are in pixels as in the tables (CIFAR-C's table for images of at most 32 px,
ImageNet-C's beyond): they are local textures, not shapes relative to the image. For grayscale images the
greyscale conversions are the identity and the colours (spatter's water and mud) become their luminance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from calikd.corruptions.base import register_corruption
from calikd.corruptions.kernels import filter2d, gaussian_blur, motion_blur_lines
from calikd.corruptions.textures import frost_texture, plasma_maps

_LUMA = (0.299, 0.587, 0.114)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """Luminance ``(N, 1, H, W)`` (OpenCV's RGB2GRAY weights); a grayscale image is its own."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _colour(images: torch.Tensor, rgb: tuple[float, float, float]) -> torch.Tensor:
    """An 8-bit RGB colour as a ``(1, C, 1, 1)`` tensor for ``images``: its luminance when ``C = 1``."""
    values = [v / 255 for v in rgb]
    if images.shape[1] == 1:
        values = [sum(w * v for w, v in zip(_LUMA, values, strict=True))]
    return images.new_tensor(values).view(1, -1, 1, 1)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) * (hi - lo) + lo


def clipped_zoom(images: torch.Tensor, zoom: float) -> torch.Tensor:
    """Zoom into the centre by ``zoom >= 1``: crop ``ceil(H / zoom) x ceil(W / zoom)``, resize it to
    ``round(crop * zoom)`` bilinearly with aligned corners (as ``scipy.ndimage.zoom(order=1)``) and trim
    the centre H x W (ImageNet-C's ``clipped_zoom``, per axis for non-square images)."""
    h, w = images.shape[-2:]
    ch, cw = math.ceil(h / zoom), math.ceil(w / zoom)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = images[..., top : top + ch, left : left + cw]
    oh, ow = max(h, round(ch * zoom)), max(w, round(cw * zoom))
    out = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=True)
    top, left = (oh - h) // 2, (ow - w) // 2
    return out[..., top : top + h, left : left + w]


@register_corruption(
    "snow",
    family="weather",
    cifar=(
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    imagenet=(
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
)
def snow(images: torch.Tensor, param: tuple[float, ...], gen: torch.Generator) -> torch.Tensor:
    """Falling snow: motion-blurred flakes over a greyed, brightened image.

    ``param = (loc, scale, zoom, threshold, blur radius, blur sigma, image weight)``: a Gaussian layer
    ``N(loc, scale)`` per image, zoomed into by ``zoom``, zeroed below ``threshold``, clipped to
    ``[0, 1]`` and motion-blurred at a random angle in ``[-135, -45]`` degrees; the image becomes
    ``w x + (1 - w) max(x, 1.5 gray(x) + 0.5)`` and gets the layer and the layer rotated by 180 degrees
    added.
    """
    loc, scale, zoom, threshold, radius, sigma, weight = param
    n, _, h, w = images.shape
    layer = loc + scale * torch.randn(n, 1, h, w, generator=gen, device=images.device)
    layer = clipped_zoom(layer, float(zoom))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = motion_blur_lines(layer, float(radius), float(sigma), _uniform(n, -135.0, -45.0, gen))
    bright = torch.maximum(images, _gray(images) * 1.5 + 0.5)
    out = weight * images + (1 - weight) * bright
    return out + layer + layer.flip(-2, -1)


@register_corruption(
    "frost",
    family="weather",
    cifar=((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    imagenet=((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
)
def frost(images: torch.Tensor, param: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Frost on the lens: the image blended with a procedural ice texture.

    ``param = (image weight, frost weight)``: ``a x + b frost``, with one procedural frost texture per image
    (mean brightness 0.4-0.5) instead of the reference's crops of frost photographs.
    """
    image_weight, frost_weight = param
    n, c, h, w = images.shape
    return image_weight * images + frost_weight * frost_texture(n, c, h, w, gen)


@register_corruption(
    "fog",
    family="weather",
    cifar=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    imagenet=((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
)
def fog(images: torch.Tensor, param: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Fog: a plasma-fractal haze added and the image renormalised.

    ``param = (strength, wibble decay)``: ``(x + s plasma) max(x) / (max(x) + s)`` with one diamond-square map
    per image (drawn at the next power of two ``>= max(H, W)`` and cropped; a smaller decay is rougher).
    """
    strength, decay = param
    n, _, h, w = images.shape
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    hazy = images + strength * plasma_maps(n, h, w, float(decay), gen)
    return hazy * peak / (peak + strength)


def _canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """OpenCV's Canny edges (3x3 Sobel, L1 magnitude) of ``(N, 1, H, W)`` 8-bit-valued maps, as a bool map."""
    h, w = img.shape[-2:]
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")

    def at(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        return t[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = at(p, -1, 1) + 2 * at(p, 0, 1) + at(p, 1, 1) - at(p, -1, -1) - 2 * at(p, 0, -1) - at(p, 1, -1)
    gy = at(p, 1, -1) + 2 * at(p, 1, 0) + at(p, 1, 1) - at(p, -1, -1) - 2 * at(p, -1, 0) - at(p, -1, 1)
    mag = gx.abs() + gy.abs()
    pm = F.pad(mag, (1, 1, 1, 1))
    tg22 = gx.abs() * math.tan(math.pi / 8)
    horizontal = gy.abs() < tg22
    vertical = gy.abs() > tg22 + 2 * gx.abs()
    keep_h = (mag > at(pm, 0, -1)) & (mag >= at(pm, 0, 1))
    keep_v = (mag > at(pm, -1, 0)) & (mag >= at(pm, 1, 0))
    keep_d = torch.where(
        gx * gy >= 0,
        (mag > at(pm, -1, -1)) & (mag > at(pm, 1, 1)),
        (mag > at(pm, -1, 1)) & (mag > at(pm, 1, -1)),
    )
    candidate = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d)) & (mag > low)
    edges = candidate & (mag > high)
    for _ in range(h * w):  # hysteresis: grow the strong edges along 8-connected candidates
        grown = candidate & (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


_CHAMFER = [(dy, dx, 1.0) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
_CHAMFER += [(dy, dx, 1.4) for dy in (-1, 1) for dx in (-1, 1)]
_CHAMFER += [
    (dy, dx, 2.1969) for dy, dx in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))
]


def _chamfer_distance(sources: torch.Tensor, cap: float) -> torch.Tensor:
    """``min(cap, d)`` with ``d`` the 5x5 chamfer distance to the nearest ``True`` pixel (OpenCV's DIST_L2
    with a 5x5 mask), by iterated min-plus filtering; outside the image counts as far."""
    h, w = sources.shape[-2:]
    dist = torch.where(sources, 0.0, cap).float()
    for _ in range(math.ceil(cap)):  # every step of a path costs at least 1
        padded = F.pad(dist, (2, 2, 2, 2), value=cap)
        new = dist
        for dy, dx, cost in _CHAMFER:
            new = torch.minimum(new, padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w] + cost)
        if torch.equal(new, dist):
            break
        dist = new
    return dist


def _equalize_hist(values: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``equalizeHist`` of 8-bit-valued maps ``(N, 1, H, W)``, per image, by ranks."""
    n = values.shape[0]
    flat = values.reshape(n, -1).contiguous()
    total = flat.shape[1]
    ordered = flat.sort(dim=1).values
    cdf = torch.searchsorted(ordered, flat, right=True).float()
    first = torch.searchsorted(ordered, ordered[:, :1].contiguous(), right=True).float()
    lut = ((cdf - first) * 255 / (total - first).clamp_min(1)).round()
    return torch.where(first == total, flat, lut).view_as(values)


_BOX3 = torch.full((3, 3), 1 / 9)
_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])


@register_corruption(
    "spatter",
    family="weather",
    benchmark=False,
    cifar=(
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    imagenet=(
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
)
def spatter(images: torch.Tensor, param: tuple[float, ...], gen: torch.Generator) -> torch.Tensor:
    """Spatter: pale-turquoise water drops (severities 1-3) or brown mud splashes (4-5).

    ``param = (loc, scale, sigma, threshold, strength / mud sigma, mud?)``: a Gaussian layer ``N(loc, scale)``
    blurred by ``sigma`` and zeroed below ``threshold``. Water: the layer times an embossed, equalised
    distance-to-edge map (Canny edges, distance transform truncated at 20 px) is normalised to ``strength``
    and adds the colour (175, 238, 238). Mud: the layer's support blurred by ``mud sigma`` and kept above 0.8
    replaces the image by the colour (63, 42, 20).
    """
    loc, scale, sigma, threshold, strength, mud = param
    n, _, h, w = images.shape
    layer = loc + scale * torch.randn(n, 1, h, w, generator=gen, device=images.device)
    layer = gaussian_blur(layer, float(sigma))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    if mud:
        mask = gaussian_blur((layer > threshold).float(), float(strength))
        mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
        return images * (1 - mask) + mask * _colour(images, (63, 42, 20))
    layer8 = (layer.clamp(0, 1) * 255).floor()
    dist = _chamfer_distance(_canny(layer8, 50, 150), 20.0)
    dist = filter2d(dist, _BOX3).floor()
    dist = _equalize_hist(dist)
    dist = filter2d(dist, _EMBOSS).round().clamp(0, 255)
    dist = filter2d(dist, _BOX3).round()
    drops = layer8 * dist
    drops = drops / drops.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) * strength
    return images + drops * _colour(images, (175, 238, 238))
