"""Optimizers (SGD, AdamW, DOT's two-momentum SGD), one optimizer step from named losses, and per-iteration
LR schedules with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from calikd.engine.dot import DistillationOrientedSGD, dot_backward_and_step
from calikd.errors import ConfigError, did_you_mean

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "multistep", "cosine", "onecycle")


def parameter_groups(
    model: nn.Module, weight_decay: float, part_lrs: Mapping[str, float] | None = None
) -> list[dict]:
    """Weight decay on weights of convs/linears, none on biases and norm parameters: two groups, and two
    more for each submodule of ``part_lrs`` (``{name: learning rate}``, a part trained at its own base rate;
    the schedule scales it as it scales the others)."""
    parts = dict(part_lrs or {})
    split: dict[tuple[str | None, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = next((p for p in parts if name.startswith(f"{p}.")), None)
        split.setdefault((part, param.ndim > 1), []).append(param)
    missing = sorted(p for p in parts if (p, True) not in split and (p, False) not in split)
    if missing:
        raise ValueError(f"no trainable parameters under {missing} for their own learning rates")
    groups = [
        {"params": split.get((None, True), []), "weight_decay": weight_decay},
        {"params": split.get((None, False), []), "weight_decay": 0.0},
    ]
    for part, lr in parts.items():
        for decayed in (True, False):
            if (part, decayed) in split:
                wd = weight_decay if decayed else 0.0
                groups.append({"params": split[(part, decayed)], "weight_decay": wd, "lr": lr})
    return groups


def build_optimizer(
    params: nn.Module | list[dict],
    name: str = "sgd",
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    dot_delta: float | None = None,
    part_lrs: Mapping[str, float] | None = None,
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW; weight decay skips biases and norm parameters;
    ``part_lrs`` gives submodules of a module their own learning rate (see :func:`parameter_groups`).

    ``dot_delta`` turns SGD into DOT's :class:`~calikd.engine.dot.DistillationOrientedSGD` (task momentum
    ``momentum - delta``, distillation momentum ``momentum + delta``; heavy-ball, Nesterov does not apply).
    """
    if lr <= 0:
        raise ConfigError(f"learning rate must be > 0; got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0; got {weight_decay}")
    groups = parameter_groups(params, weight_decay, part_lrs) if isinstance(params, nn.Module) else params
    if dot_delta is not None:
        if name != "sgd":
            raise ConfigError(f"DOT is a variant of SGD; it does not combine with optimizer '{name}'")
        return DistillationOrientedSGD(groups, lr=lr, momentum=momentum, delta=dot_delta)
    if name == "sgd":
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1); got {momentum}")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    raise ConfigError(
        f"unknown optimizer '{name}'{did_you_mean(name, OPTIMIZERS)}; choose one of {OPTIMIZERS}"
    )


def backward_and_step(
    optimizer: torch.optim.Optimizer,
    losses: Mapping[str, torch.Tensor],
    params: Sequence[torch.Tensor],
    grad_clip: float | None = None,
) -> None:
    """One optimizer step on the sum of the named ``losses`` (gradient norm of ``params`` clipped first).

    DOT's optimizer gets the task and distillation losses backpropagated separately instead."""
    if isinstance(optimizer, DistillationOrientedSGD):
        dot_backward_and_step(optimizer, losses, grad_clip)
        return
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def lr_factor(
    step: int,
    total_steps: int,
    *,
    schedule: str,
    warmup_steps: int = 0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    final_factor: float = 0.0,
) -> float:
    """Multiplier of the base LR at iteration ``step`` (0-based). Warm-up is linear from 1/(warmup+1) to 1."""
    if schedule == "onecycle":
        # cosine up to the peak at 30% (or warmup_steps), cosine down to ~0: the one-cycle policy
        peak = warmup_steps or max(1, int(0.3 * total_steps))
        start, end = 1 / 25, 1 / 1e4
        if step < peak:
            return start + (1 - start) * (1 - math.cos(math.pi * step / peak)) / 2
        t = (step - peak) / max(1, total_steps - peak)
        return end + (1 - end) * (1 + math.cos(math.pi * min(1.0, t))) / 2
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "multistep":
        return gamma ** sum(step >= m for m in milestones)
    if schedule == "cosine":
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return final_factor + (1 - final_factor) * (1 + math.cos(math.pi * min(1.0, t))) / 2
    raise ConfigError(
        f"unknown schedule '{schedule}'{did_you_mean(schedule, SCHEDULES)}; choose one of {SCHEDULES}"
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration scheduler (call ``.step()`` after every optimizer step).

    ``milestones`` are epochs (fractional allowed) at which ``multistep`` multiplies the LR by ``gamma``.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"unknown schedule '{schedule}'{did_you_mean(schedule, SCHEDULES)}; choose one of {SCHEDULES}"
        )
    if warmup_epochs < 0 or warmup_epochs > epochs:
        raise ConfigError(f"warmup_epochs must be in [0, epochs={epochs}]; got {warmup_epochs}")
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)
    steps = [round(m * steps_per_epoch) for m in milestones]

    def factor(step: int) -> float:
        return lr_factor(step, total, schedule=schedule, warmup_steps=warmup, milestones=steps, gamma=gamma)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
