"""Distillation-oriented trainer (DOT; Zhao, Cui, Song & Liang, ICCV 2023): SGD with separate momenta for
the task-loss and the distillation-loss gradients, so the distillation gradients dominate the update.

With base momentum ``m`` and ``delta``, the task gradient ``g_task`` (cross-entropy, plus weight decay)
and the distillation gradient ``g_kd`` (every other loss term) keep their own buffers::

    b_task <- (m - delta) * b_task + g_task + wd * p
    b_kd   <- (m + delta) * b_kd + g_kd
    p      <- p - lr * (b_task + b_kd)

A parameter that gets only one of the two gradients (e.g. a method's own projector, which only the
distillation loss reaches) uses momentum ``m`` for it, and weight decay joins that gradient. A buffer
starts as its first gradient (as in torch's SGD). Plain heavy-ball momentum: no Nesterov, no dampening.
It needs the two gradients separately, so each step runs two backward passes through the shared graph.

Defaults: ``megvii-research/mdistiller`` (``mdistiller/engine/dot.py``; ``mdistiller/engine/trainer.py``,
class ``DOT``: ``momentum = MOMENTUM - DELTA`` for the task, ``MOMENTUM + DELTA`` for KD;
``configs/cifar100/dot/*.yaml``: ``DELTA 0.075`` with momentum 0.9 for every CIFAR-100 pair).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from calikd.errors import ConfigError

#: loss names that are the student's own task (the rest of a distiller's losses are distillation)
TASK_LOSSES = frozenset({"ce", "js"})


class DistillationOrientedSGD(torch.optim.Optimizer):
    """SGD whose task and distillation gradients have separate momentum buffers (see the module docstring).

    Per step: backpropagate the distillation loss and call :meth:`stash_distillation_grads`, then
    backpropagate the task loss and call :meth:`step` (:func:`dot_backward_and_step` does all of it).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        delta: float = 0.075,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0:
            raise ConfigError(f"learning rate must be > 0; got {lr}")
        if not (momentum - delta >= 0.0 and momentum + delta < 1.0):
            raise ConfigError(
                f"DOT needs 0 <= momentum - delta and momentum + delta < 1; got momentum {momentum}, "
                f"delta {delta}",
                hint="lower --dot-delta (the authors use 0.075 with momentum 0.9)",
            )
        defaults = {"lr": lr, "momentum": momentum, "delta": delta, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self._kd_grads: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def stash_distillation_grads(self) -> None:
        """Take the current ``.grad`` of every parameter as its distillation gradient and clear it."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._kd_grads[p] = p.grad
                    p.grad = None

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale both gradients so the norm of their sum is at most ``max_norm``; returns that norm."""
        total = [
            (p.grad if p.grad is not None else 0) + self._kd_grads.get(p, 0)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None or p in self._kd_grads
        ]
        if not total:
            return torch.zeros(())
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in total]))
        factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(factor)
                if p in self._kd_grads:
                    self._kd_grads[p].mul_(factor)
        return norm

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, delta, wd = group["lr"], group["momentum"], group["delta"], group["weight_decay"]
            for p in group["params"]:
                g_task, g_kd = p.grad, self._kd_grads.pop(p, None)
                if g_task is None and g_kd is None:
                    continue
                state = self.state[p]
                for key, grad, own, other in (
                    ("momentum_buffer", g_task, m - delta, g_kd),
                    ("kd_momentum_buffer", g_kd, m + delta, g_task),
                ):
                    if grad is None:
                        continue
                    if wd != 0 and (key == "momentum_buffer" or g_task is None):
                        grad = grad.add(p, alpha=wd)
                    buf = state.get(key)
                    if buf is None:
                        buf = state[key] = grad.detach().clone()
                    else:
                        buf.mul_(own if other is not None else m).add_(grad)
                    p.add_(buf, alpha=-lr)
        self._kd_grads.clear()
        return loss


def dot_backward_and_step(
    optimizer: DistillationOrientedSGD,
    losses: Mapping[str, torch.Tensor],
    grad_clip: float | None = None,
) -> None:
    """Backpropagate the distillation and the task losses separately (see :data:`TASK_LOSSES`) and step."""
    task = [v for k, v in losses.items() if k in TASK_LOSSES]
    distillation = [v for k, v in losses.items() if k not in TASK_LOSSES]
    optimizer.zero_grad(set_to_none=True)
    if distillation:
        sum(distillation).backward(retain_graph=bool(task))
        optimizer.stash_distillation_grads()
    if task:
        sum(task).backward()
    if grad_clip is not None:
        optimizer.clip_grad_norm_(grad_clip)
    optimizer.step()
