"""A deployable model from a checkpoint: ONNX or TorchScript, preprocessing included, temperature folded in.

The exported model takes images as float32 ``(N, C, H, W)`` in ``[0, 1]`` (what ``ToTensor`` gives) and
returns logits. It applies the checkpoint's normalisation itself, and its calibration temperature ``T``
(fitted on val by ``calikd calibrate`` or by the distillation run) is folded into the last linear layer
(weights and bias divided by ``T``), so ``softmax`` of its output is the calibrated probability with no extra
op. Where the last linear layer does not produce the logits directly, a scale is appended instead (the
result says which).
After writing, the file is loaded back (onnxruntime / ``torch.jit.load``) and its outputs compared with
calikd's calibrated outputs on random images; a difference above :data:`TOLERANCE` is an error.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calikd.calibration import Calibrator, TemperatureScaling
from calikd.errors import ConfigError
from calikd.store import load_model
from calikd.store.checkpoint import resolve_paths

EXPORT_FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4  # max |exported - calikd| on logits, relative to max(1, |logits|)


class _Normalized(nn.Module):
    """``model((x - mean) / std)``: the checkpoint's preprocessing inside the exported graph."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


class _Scaled(nn.Module):
    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model = model
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    format: str
    temperature: float
    folded: bool  # True: into the last linear layer; False: a scale op appended (or T = 1)
    input_shape: tuple[int, ...]
    max_abs_diff: float | None  # exported vs calikd's calibrated logits; None when not checked

    def line(self) -> str:
        how = "folded into the last linear layer" if self.folded else "applied as a final scale"
        temp = (
            "no calibration (T = 1)"
            if self.temperature == 1.0
            else f"temperature {self.temperature:.4g} {how}"
        )
        check = "not checked" if self.max_abs_diff is None else f"max |diff| {self.max_abs_diff:.2e}"
        shape = f"input float32 {self.input_shape} in [0, 1]"
        return f"{self.format} model -> {self.path} ({temp}; {shape}; {check})"


def fold_temperature(model: nn.Module, temperature: float, example: torch.Tensor) -> tuple[nn.Module, bool]:
    """A copy of ``model`` whose logits are divided by ``temperature``: folded into the last ``nn.Linear``
    when that gives the same outputs on ``example``, else with a scale op appended."""
    if temperature == 1.0:
        return model, False
    with torch.no_grad():
        expected = model(example) / temperature
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if linears and linears[-1].out_features == expected.shape[-1]:
            folded = copy.deepcopy(model)
            last = [m for m in folded.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.div_(temperature)
            if last.bias is not None:
                last.bias.div_(temperature)
            if torch.allclose(folded(example), expected, rtol=1e-5, atol=1e-5):
                return folded, True
    return _Scaled(model, 1.0 / temperature), False


def _temperature(calibrator: Calibrator | None, checkpoint: str) -> float:
    if calibrator is None:
        return 1.0
    if not isinstance(calibrator, TemperatureScaling):
        raise ConfigError(
            f"the calibrator of '{checkpoint}' is '{calibrator.method}', which cannot be folded into a model",
            hint="export with a temperature calibrator (`calikd calibrate CKPT --method temperature`) "
            "or with none",
        )
    return float(calibrator.temperature)


def _input_shape(meta: dict[str, Any]) -> tuple[int, int, int]:
    size = meta.get("input_size") or (meta.get("dataset") or {}).get("image_size")
    channels = meta.get("in_channels")
    if not size or not channels:
        raise ConfigError("the checkpoint's metadata gives no input size / channels; cannot export it")
    return int(channels), int(size[0]), int(size[1])


def _write(module: nn.Module, example: torch.Tensor, path: Path, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 deprecates TorchScript
                torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(tmp))
        else:
            try:
                import onnx  # noqa: F401  (the exporter needs it)
            except ImportError:
                raise ConfigError(
                    "--format onnx needs the 'onnx' package", hint="pip install 'calikd[onnx]'"
                ) from None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kwargs: dict[str, Any] = (
                    {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
                )
                torch.onnx.export(
                    module, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, **kwargs,
                )  # fmt: skip
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor | None:
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path))(x)
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def export_model(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    format: str = "onnx",
    calibrator: Calibrator | None = None,
    seed: int = 0,
) -> ExportResult:
    """Write ``checkpoint``'s model as ``format`` to ``out`` (default: next to it, ``<stem>.onnx``/``.pt``),
    with its normalisation and ``calibrator``'s temperature inside, and check the file's outputs."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format '{format}'", hint=f"use one of {', '.join(EXPORT_FORMATS)}")
    model, meta = load_model(checkpoint)
    temperature = _temperature(calibrator, str(checkpoint))
    norm = meta.get("normalization") or {}
    if "mean" not in norm or "std" not in norm:
        raise ConfigError(f"checkpoint '{checkpoint}' records no normalization (mean/std); cannot export it")
    shape = _input_shape(meta)
    gen = torch.Generator().manual_seed(seed)
    example = torch.rand((2, *shape), generator=gen)
    normalized = _Normalized(model, list(norm["mean"]), list(norm["std"])).eval()
    deployable, folded = fold_temperature(normalized, temperature, example)
    stem = Path(resolve_paths(checkpoint).stem)  # run/last for a run folder, a .json or .safetensors path
    path = Path(out) if out is not None else stem.with_name(stem.name + SUFFIXES[format])
    if path.suffix == "":
        path = path.with_suffix(SUFFIXES[format])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(deployable.eval(), example, path, format)
    x = torch.rand((16, *shape), generator=gen)
    with torch.no_grad():
        raw = normalized(x)
        expected = raw if calibrator is None else calibrator.transform(raw.double()).float()
    got = _run_exported(path, format, x)
    diff = None
    if got is not None:
        diff = float((got.float() - expected).abs().max())
        scale = max(1.0, float(expected.abs().max()))
        if diff > TOLERANCE * scale:
            path.unlink(missing_ok=True)
            raise ConfigError(
                f"the exported {format} model differs from calikd's calibrated outputs by {diff:.3g} "
                f"(tolerance {TOLERANCE * scale:.3g}); nothing was written",
                hint="report this model; try the other --format",
            )
    return ExportResult(path, format, temperature, folded, (-1, *shape), diff)
