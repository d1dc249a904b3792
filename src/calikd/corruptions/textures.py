"""Procedural, seedable textures for the weather corruptions: plasma fractals (fog) and frost.

Every generator draws all of its randomness from a ``torch.Generator`` and produces one texture per image of
the batch, with no Python loop over images.

* :func:`plasma_fractal` is the diamond-square height map ImageNet-C's fog uses (a toroidal map, ``wibble``
  starting at 100 and divided by ``wibbledecay`` per octave, normalised to ``[0, 1]``).
* :func:`frost_texture` stands in for the six frost photographs ImageNet-C blends in, which calikd does not
  ship: a cloudy plasma base, a fine grain and trees of thin bright ice needles (three arms per nucleus,
  branching at +-60 degrees twice, as hexagonal ice grows), drawn anti-aliased, blurred with a glow, lightly
  tinted blue and scaled to a mean brightness of 0.4-0.5 like the photographs' crops.
"""

from __future__ import annotations

import math

import torch

from calikd.corruptions.kernels import gaussian_blur

#: fixed-point scale of the deterministic (integer) splatting of the frost needles
_FIXED_POINT = float(2**20)


def _uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device) * (hi - lo) + lo


def next_pow2(size: int) -> int:
    """The smallest power of two ``>= size`` (at least 2)."""
    return max(2, 1 << (max(1, int(size)) - 1).bit_length())


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` diamond-square height maps ``(n, mapsize, mapsize)`` in ``[0, 1]`` (``mapsize`` a power of two).

    Square step: each cell centre gets the mean of its four corners plus ``wibble * U(-wibble, wibble)``;
    diamond step: each edge midpoint the mean of its two corners and two neighbouring centres plus the same
    noise, on a torus; ``wibble`` starts at 100 and is divided by ``wibbledecay`` per octave. Each map is then
    min-max normalised, as in ImageNet-C's ``plasma_fractal``.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    maps = torch.zeros(n, mapsize, mapsize, dtype=torch.float32, device=gen.device)
    step, wibble = mapsize, 100.0

    def wibbled(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + wibble * _uniform(tuple(total.shape), -wibble, wibble, gen)

    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        square = corners + corners.roll(-1, 1)
        square = square + square.roll(-1, 2)
        maps[:, half::step, half::step] = wibbled(square)
        centres, corners = maps[:, half::step, half::step], maps[:, ::step, ::step]
        maps[:, ::step, half::step] = wibbled(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        maps[:, half::step, ::step] = wibbled(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step = half
        wibble /= wibbledecay
    flat = maps.view(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values.clamp_min(1e-12)
    return flat.view(n, mapsize, mapsize)


def plasma_maps(n: int, height: int, width: int, wibbledecay: float, gen: torch.Generator) -> torch.Tensor:
    """Plasma maps ``(n, 1, height, width)``: the top-left crop of a map of the next power-of-two size."""
    size = next_pow2(max(height, width))
    return plasma_fractal(n, size, wibbledecay, gen)[:, None, :height, :width]


def splat_segments(
    x0: torch.Tensor,
    y0: torch.Tensor,
    angle: torch.Tensor,
    length: torch.Tensor,
    intensity: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Draw anti-aliased line segments, ``(n, k)`` each (start, angle in radians, length in pixels, ink per
    pixel of length), into ``(n, 1, height, width)`` maps by bilinear splatting.

    The accumulation is done in 64-bit fixed point, so the result is bit-identical on every run and device
    (float atomics are not)."""
    n, k = x0.shape
    device = x0.device
    samples = max(2, math.ceil(float(length.max()) if length.numel() else 0.0) + 2)
    t = torch.linspace(0.0, 1.0, samples, device=device)
    px = (x0[..., None] + t * (length * torch.cos(angle))[..., None]).reshape(n, -1)
    py = (y0[..., None] + t * (length * torch.sin(angle))[..., None]).reshape(n, -1)
    ink = (intensity * length / samples)[..., None].expand(n, k, samples).reshape(n, -1)
    base = (torch.arange(n, device=device) * (height * width)).view(n, 1)
    total = torch.zeros(n * height * width, dtype=torch.int64, device=device)
    fx, fy = px.floor(), py.floor()
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = fx + dx, fy + dy
            weight = (1 - (px - xi).abs()) * (1 - (py - yi).abs()) * ink
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            idx = base + (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).long()
            fixed = torch.where(inside, weight * _FIXED_POINT, torch.zeros_like(weight)).round().long()
            total.index_add_(0, idx.reshape(-1), fixed.reshape(-1))
    return (total.float() / _FIXED_POINT).view(n, 1, height, width)


def _ice_needles(n: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """Trees of thin ice needles ``(n, 1, height, width)``: three arms per nucleus, each arm sprouting
    branches at +-60 degrees, which sprout smaller ones in turn. Sizes scale with the image."""
    size = math.sqrt(height * width)
    nuclei = round(4 + size / 14)
    arms, branches, twigs = 3, 6, 4

    def children(
        x0: torch.Tensor, y0: torch.Tensor, ang: torch.Tensor, length: torch.Tensor, ink: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, ...]:
        shape = (*x0.shape, m)
        t = _uniform(shape, 0.1, 1.0, gen)
        cx = x0[..., None] + t * (length * torch.cos(ang))[..., None]
        cy = y0[..., None] + t * (length * torch.sin(ang))[..., None]
        side = torch.where(_uniform(shape, 0, 1, gen) < 0.5, -1.0, 1.0)
        cang = ang[..., None] + side * math.pi / 3 + _uniform(shape, -0.15, 0.15, gen)
        clen = length[..., None] * _uniform(shape, 0.12, 0.4, gen) * (1.1 - 0.6 * t)
        cink = ink[..., None] * _uniform(shape, 0.55, 0.9, gen)
        return cx, cy, cang, clen, cink

    cx = _uniform((n, nuclei, 1), 0, width, gen).expand(n, nuclei, arms)
    cy = _uniform((n, nuclei, 1), 0, height, gen).expand(n, nuclei, arms)
    turn = torch.arange(arms, device=gen.device) * (2 * math.pi / arms)
    ang = _uniform((n, nuclei, 1), 0, 2 * math.pi, gen) + turn + _uniform((n, nuclei, arms), -0.2, 0.2, gen)
    length = size * _uniform((n, nuclei, arms), 0.05, 0.4, gen)
    ink = _uniform((n, nuclei, arms), 0.6, 1.0, gen)
    levels = [(cx, cy, ang, length, ink)]
    for count in (branches, twigs):
        levels.append(children(*levels[-1], count))
    lines = torch.zeros(n, 1, height, width, device=gen.device)
    for seg in levels:
        lines = lines + splat_segments(*(s.reshape(n, -1) for s in seg), height, width)
    return lines


def frost_texture(n: int, channels: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` procedural frost textures ``(n, channels, height, width)`` in ``[0, 1]``, mean 0.4-0.5.

    A cloudy plasma base (frost thickness), a fine blurred grain and blurred ice-needle trees with a wider
    glow, combined as ``1 - exp(-density)``, scaled to a random mean in ``[0.4, 0.5]`` and, for RGB, tinted
    slightly blue as frost photographs are.
    """
    size = math.sqrt(height * width)
    sharp = max(0.5, size / 320)
    base = plasma_maps(n, height, width, 1.8, gen)
    grain = gaussian_blur(torch.rand(n, 1, height, width, generator=gen, device=gen.device), sharp)
    needles = _ice_needles(n, height, width, gen)
    needles = gaussian_blur(needles, sharp) + 0.35 * gaussian_blur(needles, 3 * sharp)
    density = 0.6 * base**1.5 + 0.6 * base * grain + 1.4 * needles * (0.3 + base)
    tex = 1 - torch.exp(-density)
    target = _uniform((n, 1, 1, 1), 0.4, 0.5, gen)
    tex = (tex * target / tex.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)).clamp(0, 1)
    if channels == 1:
        return tex
    blue = _uniform((n, 1, 1, 1), 0.0, 0.12, gen)
    tint = torch.cat([1 - blue, 1 - blue / 2, torch.ones_like(blue)], dim=1)
    # keep the luminance of the untinted texture
    tint = tint / (0.299 * tint[:, :1] + 0.587 * tint[:, 1:2] + 0.114 * tint[:, 2:])
    return (tex * tint).clamp(0, 1)
