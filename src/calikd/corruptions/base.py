"""The corruption registry and the one entry point, :func:`corrupt`.

A corruption is a function ``fn(images, param, gen) -> images`` over a float batch ``(N, C, H, W)`` in
``[0, 1]`` (``C`` 1 or 3), registered with its five severity parameters twice: the table Hendrycks &
Dietterich used to build CIFAR-10-C / CIFAR-100-C (``make_cifar_c.py``, for images of at most 32 px) and the
one of ImageNet-C (``imagenet_c/corruptions.py``, for larger images). The two differ for most corruptions
(e.g. Gaussian noise std 0.04-0.10 on CIFAR-C against 0.08-0.38 on ImageNet-C), and ``table="auto"`` picks by
image size so that on-the-fly corruption matches the released sets. All randomness comes from ``gen``: a
corruption is a deterministic function of the images, the severity and the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch

from calikd.errors import ConfigError, did_you_mean

Table = Literal["auto", "cifar", "imagenet"]
TABLES = ("auto", "cifar", "imagenet")
SEVERITIES = (1, 2, 3, 4, 5)
#: images with both sides at most this size use the CIFAR-C table under ``table="auto"``
SMALL_IMAGE_MAX = 32
MIN_SIZE = 8

CorruptionFn = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]
_F = TypeVar("_F", bound=CorruptionFn)


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its function, family, severity tables and whether it is one of the 15."""

    name: str
    family: str
    fn: CorruptionFn
    cifar: tuple[Any, ...]
    imagenet: tuple[Any, ...]
    benchmark: bool
    description: str

    def param(self, severity: int, table: str) -> Any:
        """The parameter of ``severity`` (1-5) in ``table`` (``cifar`` or ``imagenet``)."""
        return (self.cifar if table == "cifar" else self.imagenet)[severity - 1]


_CORRUPTIONS: dict[str, Corruption] = {}
FAMILIES = ("noise", "blur", "weather", "digital")


def register_corruption(
    name: str,
    *,
    family: str,
    cifar: tuple[Any, ...],
    imagenet: tuple[Any, ...],
    benchmark: bool = True,
    description: str = "",
) -> Callable[[_F], _F]:
    """Decorator: register ``fn(images, param, gen)`` as corruption ``name`` with its two severity tables."""

    def decorate(fn: _F) -> _F:
        if name in _CORRUPTIONS:
            raise ValueError(f"corruption '{name}' is registered twice")
        if family not in FAMILIES:
            raise ValueError(f"unknown corruption family '{family}'")
        if len(cifar) != 5 or len(imagenet) != 5:
            raise ValueError(f"corruption '{name}' needs five severity parameters per table")
        doc = description or next(iter((fn.__doc__ or "").strip().splitlines()), "")
        _CORRUPTIONS[name] = Corruption(name, family, fn, tuple(cifar), tuple(imagenet), benchmark, doc)
        return fn

    return decorate


def _ensure_loaded() -> None:
    import calikd.corruptions.blur
    import calikd.corruptions.digital
    import calikd.corruptions.noise
    import calikd.corruptions.weather  # noqa: F401


def list_corruptions(kind: Literal["all", "benchmark", "extra"] = "all") -> list[str]:
    """Names of the registered corruptions, in the benchmark's order (noise, blur, weather, digital)."""
    _ensure_loaded()
    if kind not in ("all", "benchmark", "extra"):
        raise ConfigError(f"unknown corruption kind '{kind}': choose all, benchmark or extra")
    chosen = [c for c in _CORRUPTIONS.values() if kind == "all" or (kind == "benchmark") == c.benchmark]
    chosen.sort(key=lambda c: (not c.benchmark, FAMILIES.index(c.family)))
    return [c.name for c in chosen]


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name`` (a clear error with the nearest name otherwise)."""
    _ensure_loaded()
    key = str(name).lower().replace("-", "_")
    if key not in _CORRUPTIONS:
        raise ConfigError(
            f"unknown corruption '{name}'{did_you_mean(key, _CORRUPTIONS)}",
            hint=f"choose from: {', '.join(list_corruptions())} (or 'all', 'benchmark', 'extra')",
        )
    return _CORRUPTIONS[key]


def resolve_corruptions(names: str | list[str]) -> list[str]:
    """``"all"`` / ``"benchmark"`` / ``"extra"`` / ``"a,b"`` / a list of names -> validated names."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        group = (
            list_corruptions(item) if item in ("all", "benchmark", "extra") else [get_corruption(item).name]
        )
        out.extend(n for n in group if n not in out)
    if not out:
        raise ConfigError("no corruption named", hint="give 'all', 'benchmark', 'extra' or names")
    return out


def resolve_table(table: str, height: int, width: int) -> str:
    """``cifar`` or ``imagenet``: ``auto`` picks CIFAR-C's table for images of at most 32 px."""
    if table not in TABLES:
        raise ConfigError(
            f"unknown severity table '{table}'{did_you_mean(table, TABLES)}", hint="auto, cifar or imagenet"
        )
    if table != "auto":
        return table
    return "cifar" if max(height, width) <= SMALL_IMAGE_MAX else "imagenet"


def check_images(images: torch.Tensor) -> None:
    """Refuse anything but a float ``(N, C, H, W)`` batch in ``[0, 1]`` with ``C`` 1 or 3."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ConfigError(
            f"corruptions take a float tensor in [0, 1], got {type(images).__name__}"
            + (f" of dtype {images.dtype}" if isinstance(images, torch.Tensor) else ""),
            hint="convert uint8 images with images.float() / 255",
        )
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(
            f"corruptions take a batch of shape (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}",
            hint="add a batch dimension with images.unsqueeze(0); channels-last arrays need "
            ".permute(0, 3, 1, 2)",
        )
    if min(images.shape[-2:]) < MIN_SIZE:
        raise ConfigError(
            f"corruptions need images of at least {MIN_SIZE}x{MIN_SIZE} pixels, "
            f"got {tuple(images.shape[-2:])}"
        )
    if images.numel() and not bool(torch.isfinite(images).all()):
        raise ConfigError("the images contain NaN or infinite values")
    if images.numel() and (float(images.min()) < -1e-6 or float(images.max()) > 1 + 1e-6):
        raise ConfigError(
            "corruptions take pixel values in [0, 1], "
            f"got [{float(images.min()):.3g}, {float(images.max()):.3g}]",
            hint="undo normalisation first; uint8 images divide by 255",
        )


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    table: Table = "auto",
) -> torch.Tensor:
    """Corrupt a float batch ``(N, C, H, W)`` in ``[0, 1]`` with ``name`` at ``severity`` (1-5).

    The result has the input's shape, dtype and device, lies in ``[0, 1]``, and depends only on the images,
    ``name``, ``severity``, ``seed`` and the severity ``table`` (``auto``: CIFAR-C's for images of at most
    32 px, ImageNet-C's otherwise).
    """
    corruption = get_corruption(name)
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ConfigError(f"severity must be an integer from 1 to 5, got {severity!r}")
    check_images(images)
    chosen = resolve_table(table, *images.shape[-2:])
    gen = torch.Generator(device=images.device)
    gen.manual_seed(int(seed))
    dtype = images.dtype
    with torch.no_grad():
        out = corruption.fn(images.float(), corruption.param(severity, chosen), gen)
    if out.shape != images.shape:
        raise RuntimeError(
            f"corruption '{name}' changed the shape {tuple(images.shape)} -> {tuple(out.shape)}"
        )
    return out.clamp_(0.0, 1.0).to(dtype)
