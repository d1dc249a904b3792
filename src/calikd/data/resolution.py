"""Lower the resolution of image batches (cross-resolution distillation: the student sees low-res images)."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F

from calikd.errors import ConfigError, did_you_mean

MODES = ("area", "bilinear")
UPSCALE_MODES = ("nearest", "bilinear")


class ResolutionTransform:
    """Downscale ``(B, C, H, W)`` batches to ``size`` or by ``factor``; optionally scale back up.

    Give exactly one of ``size`` (int or (H, W)) and ``factor`` (in (0, 1]). ``mode`` is ``"area"``
    (block averages) or ``"bilinear"`` (antialiased). With ``upscale=True`` the result is resized back to the
    input size with ``upscale_mode`` (default: ``"nearest"`` after area, ``"bilinear"`` after bilinear), so a
    model keeps its input shape but sees only low-resolution detail. uint8 input gives uint8 output (rounded);
    float input keeps its dtype.
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None = None,
        factor: float | None = None,
        mode: str = "area",
        upscale: bool = False,
        upscale_mode: str | None = None,
    ) -> None:
        if (size is None) == (factor is None):
            raise ConfigError("ResolutionTransform needs exactly one of size= and factor=")
        if size is not None:
            pair = (size, size) if isinstance(size, numbers.Integral) and not isinstance(size, bool) else size
            try:
                h, w = pair  # type: ignore[misc]
            except (TypeError, ValueError):
                raise ConfigError(f"size must be an int or (H, W), got {size!r}") from None
            for v in (h, w):
                if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                    raise ConfigError(f"size must hold positive integers, got {size!r}")
            self.size: tuple[int, int] | None = (int(h), int(w))
            self.factor: float | None = None
        else:
            if (
                isinstance(factor, bool)
                or not isinstance(factor, numbers.Real)
                or not 0.0 < float(factor) <= 1.0
            ):
                raise ConfigError(f"factor must be a number in (0, 1], got {factor!r}")
            self.size = None
            self.factor = float(factor)
        if mode not in MODES:
            raise ConfigError(
                f"unknown resolution mode '{mode}'{did_you_mean(str(mode), MODES)}",
                hint=f"choose one of {', '.join(MODES)}",
            )
        if upscale_mode is None:
            upscale_mode = "nearest" if mode == "area" else "bilinear"
        if upscale_mode not in UPSCALE_MODES:
            raise ConfigError(
                f"unknown upscale mode '{upscale_mode}'{did_you_mean(str(upscale_mode), UPSCALE_MODES)}",
                hint=f"choose one of {', '.join(UPSCALE_MODES)}",
            )
        self.mode = mode
        self.upscale = bool(upscale)
        self.upscale_mode = upscale_mode

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The low-resolution (H, W) for an input of ``height`` x ``width``."""
        if self.size is not None:
            return self.size
        assert self.factor is not None
        return max(1, int(height * self.factor + 0.5)), max(1, int(width * self.factor + 0.5))

    def _resize(self, x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
        if mode in ("area", "nearest"):
            return F.interpolate(x, size=size, mode=mode)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError(f"ResolutionTransform expects a (B, C, H, W) tensor, got {shape}")
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise ConfigError(f"ResolutionTransform expects uint8 or float images, got {x.dtype}")
        h, w = x.shape[-2:]
        size = self.output_size(h, w)
        if size[0] > h or size[1] > w:
            raise ConfigError(
                f"ResolutionTransform downscales, but the target {size[0]}x{size[1]} is larger than the "
                f"input {h}x{w}"
            )
        if size == (h, w) or x.shape[0] == 0:
            return x
        xf = x.to(torch.float32) if x.dtype == torch.uint8 else x
        y = self._resize(xf, size, self.mode)
        if self.upscale:
            y = self._resize(y, (h, w), self.upscale_mode)
        if x.dtype == torch.uint8:
            return y.round_().clamp_(0, 255).to(torch.uint8)
        return y.to(x.dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings (inverse: :meth:`from_dict`)."""
        return {
            "size": list(self.size) if self.size is not None else None,
            "factor": self.factor,
            "mode": self.mode,
            "upscale": self.upscale,
            "upscale_mode": self.upscale_mode,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResolutionTransform:
        """Rebuild from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        valid = ("size", "factor", "mode", "upscale", "upscale_mode")
        for key in d:
            if key not in valid:
                raise ConfigError(f"unknown ResolutionTransform key '{key}'{did_you_mean(key, valid)}")
        size = d.get("size")
        return cls(
            size=tuple(size) if isinstance(size, list) else size,
            factor=d.get("factor"),
            mode=d.get("mode", "area"),
            upscale=bool(d.get("upscale", False)),
            upscale_mode=d.get("upscale_mode"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResolutionTransform) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, str(v)) for k, v in self.to_dict().items())))

    def __repr__(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"factor={self.factor}"
        return f"ResolutionTransform({what}, mode={self.mode!r}, upscale={self.upscale})"
