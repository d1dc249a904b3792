"""Resolve ``--device`` and ``--precision`` choices to concrete settings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "fp32-cl", "bf16", "tf32")
PRECISION_HELP = (
    "auto = the fastest of the paths below, measured on this machine for a long run (else bf16 where the "
    "hardware runs it fast, fp32 elsewhere); fp32; fp32-cl = fp32 + channels_last; bf16 = bf16 autocast + "
    "channels_last; tf32 = fp32 with TF32 matmuls and convolutions + channels_last (CUDA only)"
)


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
    """How to run forward passes: autocast dtype (or None for fp32), memory format and (CUDA) TF32."""

    name: str
    autocast_dtype: torch.dtype | None
    channels_last: bool
    tf32: bool = False

    def autocast(self, device: torch.device) -> torch.autocast:
        """An autocast context for ``device`` (disabled for fp32)."""
        return torch.autocast(
            device_type=device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
        )

    def configure(self, device: torch.device) -> None:
        """Set the process-wide TF32 switches this path needs (CUDA only; nothing on CPU)."""
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in this path's memory format (4-D inputs only)."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


PRECISIONS = {
    "fp32": Precision("fp32", None, channels_last=False),
    "fp32-cl": Precision("fp32-cl", None, channels_last=True),
    "bf16": Precision("bf16", torch.bfloat16, channels_last=True),
    "tf32": Precision("tf32", None, channels_last=True, tf32=True),
}


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 autocast faster than fp32 (a bf16 GPU; a CPU with AMX or AVX512-BF16)."""
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """A named path; ``auto`` here is the static rule (bf16 where the hardware runs it fast, else fp32).

    Training runs measure instead (:func:`calikd.engine.precision.select_precision`).
    """
    if precision not in PRECISION_CHOICES:
        raise ConfigError(
            f"unknown precision '{precision}'", hint=f"choose one of {', '.join(PRECISION_CHOICES)}"
        )
    if precision == "auto":
        precision = "bf16" if fast_bf16(device) else "fp32"
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError("--precision tf32 is a CUDA path", hint="on CPU use fp32, fp32-cl or bf16")
    return PRECISIONS[precision]
