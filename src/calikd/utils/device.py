"""Resolve ``--device`` and ``--precision`` choices to concrete settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. ``cuda`` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is available", hint="use --device auto or cpu"
        )
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device '{name}'", hint=f"choose one of {', '.join(DEVICE_CHOICES)}")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matrix units (AMX or AVX512-BF16)."""
    try:
        import torch.backends.mkldnn as mkldnn

        if hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported"):
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and mkldnn.is_available()
    except (AttributeError, RuntimeError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass(frozen=True)
class Precision:
    """How to run forward passes: autocast dtype (or None for fp32) and memory format."""

    name: str
    autocast_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self, device: torch.device) -> torch.autocast:
        """An autocast context for ``device`` (disabled for fp32)."""
        return torch.autocast(
            device_type=device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
        )


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto`` -> bf16 autocast + channels_last where the hardware runs bf16 fast, else fp32."""
    if precision not in PRECISION_CHOICES:
        raise ConfigError(
            f"unknown precision '{precision}'", hint=f"choose one of {', '.join(PRECISION_CHOICES)}"
        )
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()
        precision = "bf16" if fast else "fp32"
    if precision == "bf16":
        return Precision("bf16", torch.bfloat16, channels_last=True)
    return Precision("fp32", None, channels_last=False)
