"""RGB <-> HSV on batches in torch, with the conventions of ``skimage.color`` that ImageNet-C uses.

Both functions take a float batch ``(N, 3, H, W)`` (channels R, G, B or H, S, V, all in ``[0, 1]``) and work
on any device. As in scikit-image: ``V = max(R, G, B)``, ``S = (max - min) / V`` (0 where ``max == min``),
the hue is in turns (``[0, 1)``) and is 0 for grey pixels.
"""

from __future__ import annotations

import torch


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """Convert an RGB batch ``(N, 3, H, W)`` in ``[0, 1]`` to HSV (hue in turns), as skimage's ``rgb2hsv``."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb_to_hsv takes a batch (N, 3, H, W), got {tuple(rgb.shape)}")
    r, g, b = rgb.unbind(dim=1)
    value, _ = rgb.max(dim=1)
    delta = value - rgb.min(dim=1).values
    grey = delta == 0
    safe_delta = torch.where(grey, torch.ones_like(delta), delta)
    safe_value = torch.where(value == 0, torch.ones_like(value), value)
    saturation = torch.where(grey, torch.zeros_like(delta), delta / safe_value)
    # skimage assigns red, then green, then blue where each is the maximum: the last one wins on ties
    hue = torch.where(
        b == value,
        4.0 + (r - g) / safe_delta,
        torch.where(g == value, 2.0 + (b - r) / safe_delta, (g - b) / safe_delta),
    )
    hue = torch.remainder(hue / 6.0, 1.0)
    hue = torch.where(grey, torch.zeros_like(hue), hue)
    return torch.stack((hue, saturation, value), dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Convert an HSV batch ``(N, 3, H, W)`` (hue in turns) back to RGB, as ``skimage.color.hsv2rgb``."""
    if hsv.dim() != 4 or hsv.shape[1] != 3:
        raise ValueError(f"hsv_to_rgb takes a batch (N, 3, H, W), got {tuple(hsv.shape)}")
    hue, saturation, value = (t.unsqueeze(1) for t in hsv.unbind(dim=1))
    # channel n (R: 5, G: 3, B: 1) is V - V S clamp(min(k, 4 - k), 0, 1) with k = (n + 6 H) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * hue, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return value - value * saturation * ramp
