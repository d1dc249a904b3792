"""A faster forward pass for a frozen model (the distillation teacher): eager, channels_last or compiled.

The teacher of a logit-based method runs once per training batch and never changes, so its forward pass can
be prepared for inference once:

- ``eager``: the module as it is;
- ``channels_last``: a copy in channels_last memory format (conv nets; 1.3-12x on the project's CPUs);
- ``compiled``: that copy under ``torch.compile`` with inductor's freezing (weights as constants, batch
  norm folded into the convolutions, element-wise ops fused, oneDNN weights pre-packed), tried only when
  the run is long enough to repay the compile time (``batches x measured seconds per batch x COMPILE_GAIN >
  compile seconds``, the compile time measured once and remembered per machine).

``auto`` measures eager and channels_last on a few batches and picks with the deterministic rule of
:func:`calikd.engine.precision.choose_fastest`; the measurements are remembered per (machine, model, input,
batch, precision) like the precision probe's. Every prepared path is checked against the eager module on an
example batch (:func:`check_close`): a path that differs by more than the tolerance falls back to eager with a
note. Feature-based methods keep the eager module (their forward hooks sit on its layers).
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch._inductor.config as inductor_config
from torch import nn

from calikd.engine import probe_cache
from calikd.engine.distributed import Distributed
from calikd.engine.precision import ROUNDS, choose_fastest, has_conv
from calikd.utils.device import Precision

TEACHER_PATHS = ("eager", "channels_last", "compiled")
COMPILE_GAIN = (
    0.2  # the saving assumed of compiling, as a share of the fastest eager time, before measuring it
)
DEFAULT_COMPILE_S = 20.0  # assumed compile time before one has been measured on this machine
MIN_BATCHES = 50  # fewer batches than this: no measurement, the static path
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}  # |path - eager| <= tol * (1 + max |eager logit|)


@dataclass
class FrozenRunner:
    """A frozen model's forward pass on one path; call it under ``inference_mode`` like the module."""

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    channels_last: bool
    source: str = "static"
    images_per_s: dict[str, float] = field(default_factory=dict)
    compile_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward(x)

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for summaries, reports and the teacher-logit cache's key."""
        return {
            "path": self.name,
            "source": self.source,
            "images_per_s": {k: round(v, 1) for k, v in self.images_per_s.items()},
            "compile_s": None if self.compile_s is None else round(self.compile_s, 1),
        }

    def line(self) -> str:
        rates = ", ".join(f"{k} {v:.0f} img/s" for k, v in self.images_per_s.items())
        compiled = f"; compiled in {self.compile_s:.1f} s" if self.compile_s is not None else ""
        return f"teacher path {self.name} ({self.source}{': ' + rates if rates else ''}{compiled})"


def tolerance(precision: Precision) -> float:
    """The allowed difference from the eager module, relative to the logits' scale."""
    return TOLERANCE["fp32" if precision.autocast_dtype is None else "bf16"]


def check_close(reference: torch.Tensor, other: torch.Tensor, precision: Precision) -> float | None:
    """None when ``other`` is within :func:`tolerance` of ``reference``, else the relative difference."""
    scale = 1.0 + float(reference.float().abs().max())
    diff = float((reference.float() - other.float()).abs().max()) / scale
    return None if diff <= tolerance(precision) else diff


def can_compile(device: torch.device) -> bool:
    """torch.compile's CPU backend needs a C++ compiler; CUDA needs triton."""
    if not hasattr(torch, "compile"):
        return False
    if device.type == "cpu":
        return shutil.which("g++") is not None or shutil.which("c++") is not None
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _build(module: nn.Module, name: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], bool]:
    if name == "eager":
        return module, False
    fast = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)
    if name == "channels_last":
        return fast, True
    compiled = torch.compile(fast, dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        # inductor's freezing: weights become constants, batch norm folds into the convolutions and
        # oneDNN weights are pre-packed (only while compiling; the teacher never changes)
        with inductor_config.patch(freezing=True):
            return compiled(x)

    return run, True


def _time(
    run: FrozenRunner, x: torch.Tensor, precision: Precision, device: torch.device, n: int = 2
) -> float:
    with torch.inference_mode(), precision.autocast(device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            run(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / n


def _outputs(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, precision, device) -> torch.Tensor:
    with torch.inference_mode(), precision.autocast(device):
        return run(x)


def prepare_frozen(
    module: nn.Module,
    example: torch.Tensor,
    *,
    precision: Precision,
    device: torch.device,
    requested: str = "auto",
    batches: int,
    model_key: dict[str, Any],
    runtime: Distributed | None = None,
    timings: dict[str, float] | None = None,
) -> FrozenRunner:
    """The forward path of the frozen ``module`` for a run of ``batches`` batches shaped like ``example``.

    ``requested``: ``auto`` (measure), or ``eager`` / ``channels_last`` / ``compiled`` to force a path.
    ``timings`` (seconds per batch by path) replaces the measurement (tests inject fake timings).
    """
    runtime = runtime or Distributed()
    module.eval()
    x = example.to(device)
    conv = has_conv(module) and x.ndim == 4
    paths: Sequence[str] = ("eager", "channels_last") if conv else ("eager",)
    if getattr(module, "eager_only", False):  # e.g. an ONNX teacher: its runtime has its own optimisations
        return _finish(module, x, "eager", "static", precision, device, {}, None)
    if requested != "auto":
        return _finish(module, x, requested, "forced", precision, device, {}, None)
    if len(paths) == 1 and not can_compile(device):
        return _finish(module, x, "eager", "static", precision, device, {}, None)
    if batches < MIN_BATCHES and timings is None:
        return _finish(module, x, "eager", "static", precision, device, {}, None)
    key = {
        "machine": probe_cache.machine_key(device),
        "model": model_key,
        "input_shape": list(x.shape),
        "precision": precision.name,
    }
    chosen, seconds, compile_s, source = "eager", {}, None, "probed"
    measured_compile = False
    built: dict[str, FrozenRunner] = {}
    notes: list[str] = []
    if runtime.is_main:
        with probe_cache.exclusive():  # a pinned sweep measures once: the others wait, then read
            stored = probe_cache.lookup("frozen", key) if timings is None else None
            if stored is not None:
                seconds = {k: float(v) for k, v in stored.get("seconds", {}).items()}
                compile_s = stored.get("compile_s")
                source = "cached"
            elif timings is not None:
                seconds = dict(timings)
            else:
                built = {name: FrozenRunner(name, *_build(module, name)) for name in paths}
                for runner in built.values():  # warm-up (and the first call of oneDNN's kernels)
                    _time(runner, x, precision, device, n=1)
                for _ in range(ROUNDS):
                    for name, runner in built.items():
                        took = _time(runner, x, precision, device)
                        seconds[name] = min(seconds.get(name, float("inf")), took)
            fastest = min(seconds[name] for name in paths if name in seconds)
            repaid = batches * fastest * COMPILE_GAIN > (compile_s or DEFAULT_COMPILE_S)
            worth = can_compile(device) and repaid
            if worth and "compiled" not in seconds and timings is None:
                start = time.perf_counter()
                try:
                    runner = FrozenRunner("compiled", *_build(module, "compiled"))
                    _time(runner, x, precision, device, n=1)  # compiles
                except Exception as exc:  # a model torch.compile cannot handle
                    notes.append(f"torch.compile failed on the teacher ({type(exc).__name__}); not using it")
                else:
                    compile_s = time.perf_counter() - start
                    seconds["compiled"] = min(_time(runner, x, precision, device) for _ in range(ROUNDS))
                    built["compiled"] = runner
                    measured_compile = True
            order = [name for name in TEACHER_PATHS if name in seconds and (name != "compiled" or worth)]
            chosen = choose_fastest(seconds, order)
            if (source == "probed" or measured_compile) and timings is None:  # later runs read the same
                probe_cache.remember("frozen", key, {"seconds": seconds, "compile_s": compile_s})
    chosen = TEACHER_PATHS[runtime.broadcast_int(TEACHER_PATHS.index(chosen))]
    rates = {name: x.shape[0] / max(s, 1e-12) for name, s in seconds.items()}
    runner = _finish(module, x, chosen, source, precision, device, rates, compile_s, built.get(chosen))
    runner.notes = notes + runner.notes
    return runner


def _finish(
    module: nn.Module,
    x: torch.Tensor,
    name: str,
    source: str,
    precision: Precision,
    device: torch.device,
    rates: dict[str, float],
    compile_s: float | None,
    built: FrozenRunner | None = None,
) -> FrozenRunner:
    """The runner of path ``name`` (``built`` when the probe made it), checked against the eager module."""
    if name not in TEACHER_PATHS:
        raise ValueError(f"unknown teacher path '{name}'; choose one of {', '.join(TEACHER_PATHS)}")
    if name == "eager" or (name == "channels_last" and not has_conv(module)):
        return FrozenRunner("eager", module, False, source, rates, compile_s)
    try:
        runner = built or FrozenRunner(name, *_build(module, name))
        runner.source, runner.images_per_s, runner.compile_s = source, rates, compile_s
        differs = check_close(
            _outputs(module, x, precision, device), _outputs(runner, x, precision, device), precision
        )
    except Exception as exc:  # a model torch.compile cannot handle: eager, with a note
        note = f"the {name} teacher path failed ({type(exc).__name__}: {str(exc)[:200]}); running it eagerly"
        return FrozenRunner("eager", module, False, source, rates, compile_s, [note])
    if differs is not None:
        note = (
            f"the {name} teacher path differs from the eager one by {differs:.2e} (relative), over the "
            f"tolerance {tolerance(precision):.0e}; running it eagerly"
        )
        return FrozenRunner("eager", module, False, source, rates, compile_s, [note])
    return runner
