"""``--precision auto``: the fastest correct training path, measured on this machine.

For a run long enough to repay it (:data:`PROBE_MIN_STEPS` optimizer steps), a few timed training steps of
the actual model at the actual input shape and batch size compare the paths the hardware supports:

- CPU: fp32, fp32 + channels_last (conv nets), and bf16 autocast only where the CPU has bf16 units (AMX or
  AVX512-BF16; elsewhere bf16 is emulated and several times slower);
- CUDA: fp32, TF32 + channels_last, and bf16 autocast + channels_last where the GPU supports bf16.

The choice is deterministic given the timings (:func:`choose_fastest`), logged with its measured img/s,
recorded in the run's summary and report, remembered per (machine, model, input shape, batch, torch version)
(:mod:`calikd.engine.probe_cache`) so later runs skip the probe, and kept on ``--resume``. A shorter run takes
the static rule (bf16 where the hardware is fast, else fp32). A named ``--precision`` is never overridden.
The probe trains deep copies on random inputs with the global random state saved and restored, so it changes
neither the model nor any seeded draw.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from calikd.engine import probe_cache
from calikd.engine.distributed import Distributed
from calikd.utils.device import PRECISIONS, Precision, fast_bf16, resolve_precision

PROBE_MIN_STEPS = 400  # a run of fewer optimizer steps keeps the static choice (the probe costs ~20 steps)
MARGIN = 0.03  # a later candidate must be this much faster than the pick so far to replace it
WARMUP_STEPS = 2
TIMED_STEPS = 2
ROUNDS = 3

Timer = Callable[[Precision], float]  # seconds per step of one timed round


@dataclass
class PrecisionChoice:
    """The path a run trains on and how it was chosen."""

    precision: Precision
    requested: str
    source: str  # forced | static | probed | cached | resumed
    images_per_s: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    @property
    def name(self) -> str:
        return self.precision.name

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for summaries and reports."""
        return {
            "requested": self.requested,
            "chosen": self.name,
            "source": self.source,
            "images_per_s": {k: round(v, 1) for k, v in self.images_per_s.items()},
            "reason": self.reason,
        }

    def line(self) -> str:
        """One human line, e.g. ``precision fp32-cl (auto, probed: fp32-cl 1210 img/s, fp32 850 img/s)``."""
        rates = ", ".join(f"{k} {v:.0f} img/s" for k, v in self.images_per_s.items())
        detail = f"{self.requested}, {self.source}" + (f": {rates}" if rates else "")
        if self.reason:
            detail += f"; {self.reason}"
        return f"precision {self.name} ({detail})"


def choose_fastest(seconds: Mapping[str, float], order: Sequence[str], margin: float = MARGIN) -> str:
    """The candidate to use given its seconds per step: walking ``order`` (simplest first), a candidate
    replaces the pick so far only when more than ``margin`` faster. Deterministic given the timings."""
    names = [name for name in order if name in seconds]
    if not names:
        raise ValueError("no timings to choose from")
    best = names[0]
    for name in names[1:]:
        if seconds[name] < seconds[best] * (1.0 - margin):
            best = name
    return best


def has_conv(model: nn.Module) -> bool:
    """Whether ``model`` has convolutions (channels_last only matters for them)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def precision_candidates(device: torch.device, model: nn.Module) -> tuple[str, ...]:
    """The paths worth measuring for ``model`` on ``device``, simplest first."""
    conv = has_conv(model)
    if device.type == "cuda":
        names = ["fp32", "tf32"]
        if fast_bf16(device):
            names.append("bf16")
        return tuple(names)
    names = ["fp32"] + (["fp32-cl"] if conv else [])
    if fast_bf16(device):
        names.append("bf16")
    return tuple(names)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step_timer(
    model: nn.Module, input_shape: Sequence[int], num_classes: int, batch_size: int, device: torch.device
) -> Timer:
    """A timer of SGD steps (cross-entropy) on a deep copy of ``model`` under a given path."""
    copies: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=gen).to(device)
    y = torch.randint(0, num_classes, (batch_size,), generator=gen).to(device)

    def timer(precision: Precision) -> float:
        if precision.name not in copies:
            net = copy.deepcopy(model).to(device).train()
            if precision.channels_last:
                net.to(memory_format=torch.channels_last)
            params = [p for p in net.parameters() if p.requires_grad]
            copies[precision.name] = (net, torch.optim.SGD(params, lr=1e-4, momentum=0.9))
            for _ in range(WARMUP_STEPS):
                _step(net, copies[precision.name][1], precision, x, y, device)
        net, optimizer = copies[precision.name]
        _sync(device)
        start = time.perf_counter()
        for _ in range(TIMED_STEPS):
            _step(net, optimizer, precision, x, y, device)
        _sync(device)
        return (time.perf_counter() - start) / TIMED_STEPS

    return timer


def _step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
) -> None:
    precision.configure(device)
    with precision.autocast(device):
        logits = net(precision.to_input(x))
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(candidates: Sequence[str], timer: Timer, rounds: int = ROUNDS) -> dict[str, float]:
    """Best seconds per step of each candidate over ``rounds`` interleaved rounds (robust to a busy CPU)."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name in candidates:
            seconds = timer(PRECISIONS[name])
            best[name] = min(best.get(name, float("inf")), seconds)
    return best


def select_precision(
    requested: str,
    device: torch.device,
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    batch_size: int,
    total_steps: int,
    model_key: Mapping[str, Any],
    resumed: str | None = None,
    runtime: Distributed | None = None,
    timer: Timer | None = None,
) -> PrecisionChoice:
    """The training path for ``model`` (see the module docstring); ``batch_size`` is this process's batch.

    ``resumed`` is the path a resumed run trained on; ``timer`` replaces the real measurement (tests inject
    fake timings). Under DDP rank 0 measures and every rank takes its choice.
    """
    runtime = runtime or Distributed()
    if requested != "auto":
        return _configured(PrecisionChoice(resolve_precision(requested, device), requested, "forced"), device)
    if resumed in PRECISIONS:
        reason = "the path the run was started on"
        return _configured(
            PrecisionChoice(resolve_precision(resumed, device), "auto", "resumed", {}, reason), device
        )
    static = resolve_precision("auto", device)
    candidates = precision_candidates(device, model)
    if len(candidates) == 1:
        return _configured(PrecisionChoice(static, "auto", "static", {}, "only one path applies"), device)
    if total_steps < PROBE_MIN_STEPS:
        reason = f"{total_steps} steps are too few to repay a measurement (< {PROBE_MIN_STEPS})"
        return _configured(PrecisionChoice(static, "auto", "static", {}, reason), device)
    key = {
        "machine": probe_cache.machine_key(device),
        "model": dict(model_key),
        "input_shape": list(input_shape),
        "batch_size": batch_size,
        "candidates": list(candidates),
    }
    choice: PrecisionChoice | None = None
    if runtime.is_main:
        with probe_cache.exclusive():  # a pinned sweep measures once: the others wait, then read
            injected = timer is not None
            stored = None if injected else probe_cache.lookup("precision", key)
            if stored is not None and stored.get("chosen") in candidates:
                rates = {k: float(v) for k, v in stored.get("images_per_s", {}).items()}
                choice = PrecisionChoice(PRECISIONS[stored["chosen"]], "auto", "cached", rates)
            else:
                timer = timer or training_step_timer(model, input_shape, num_classes, batch_size, device)
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    seconds = measure(candidates, timer)
                chosen = choose_fastest(seconds, candidates)
                rates = {name: batch_size / max(s, 1e-12) for name, s in seconds.items()}
                choice = PrecisionChoice(PRECISIONS[chosen], "auto", "probed", rates)
                if not injected and not probe_cache.remember(
                    "precision", key, {"chosen": chosen, "images_per_s": rates}
                ):
                    load = probe_cache.busy_load()
                    if load is not None:
                        choice.reason = f"not remembered: the machine was busy (load {load:.1f})" + (
                            "; pinned for this sweep" if probe_cache.is_pinned() else ""
                        )
    index = runtime.broadcast_int(candidates.index(choice.name) if choice is not None else 0)
    if choice is None:  # another rank: rank 0's choice
        choice = PrecisionChoice(PRECISIONS[candidates[index]], "auto", "rank 0's measurement")
    return _configured(choice, device)


def _configured(choice: PrecisionChoice, device: torch.device) -> PrecisionChoice:
    choice.precision.configure(device)
    return choice
