"""DOT's two-momentum SGD: updates against a NumPy re-derivation of the paper's rule, equality with SGD at
delta 0, gradient clipping, state round trip, and distillation with ``--dot`` (options checked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calikd.distill import distill
from calikd.engine.dot import DistillationOrientedSGD, dot_backward_and_step
from calikd.engine.optim import backward_and_step, build_optimizer
from calikd.errors import ConfigError

LR, M, DELTA, WD = 0.1, 0.9, 0.075, 0.01


def make_params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]


def losses_for(params, step: int) -> dict[str, torch.Tensor]:
    """Task loss reaches params 0 and 1, distillation loss params 0 and 2."""
    a, b, c = params
    w = torch.tensor([1.0, -2.0, 0.5]) * (step + 1)
    return {"ce": (a * w).sum() ** 2 / 10 + (b**2).sum(), "kd": ((a - c) ** 2).sum() + (c * w).sum()}


def numpy_grads(p: list[np.ndarray], step: int) -> tuple[list, list]:
    a, b, c = p
    w = np.array([1.0, -2.0, 0.5]) * (step + 1)
    task = [2 * (a @ w) * w / 10, 2 * b, None]
    kd = [2 * (a - c), None, -2 * (a - c) + w]
    return task, kd


def numpy_dot(p0: list[np.ndarray], steps: int, wd: float) -> list[np.ndarray]:
    """The DOT rule, written out: b_task <- (m - d) b_task + g_task + wd p, b_kd <- (m + d) b_kd + g_kd,
    p <- p - lr (b_task + b_kd); m alone (and the weight decay) for a parameter with only one gradient."""
    p = [x.astype(np.float64).copy() for x in p0]
    bt: list = [None] * 3
    bk: list = [None] * 3
    for step in range(steps):
        task, kd = numpy_grads(p, step)
        for i in range(3):
            both = task[i] is not None and kd[i] is not None
            update = np.zeros(3)
            if task[i] is not None:
                g = task[i] + wd * p[i]
                bt[i] = g if bt[i] is None else (M - DELTA if both else M) * bt[i] + g
                update += bt[i]
            if kd[i] is not None:
                g = kd[i] + (0 if task[i] is not None else wd * p[i])
                bk[i] = g if bk[i] is None else (M + DELTA if both else M) * bk[i] + g
                update += bk[i]
            p[i] = p[i] - LR * update
    return p


def run_dot(steps: int, wd: float, delta: float = DELTA) -> list[torch.nn.Parameter]:
    params = make_params()
    opt = DistillationOrientedSGD([{"params": params, "weight_decay": wd}], lr=LR, momentum=M, delta=delta)
    for step in range(steps):
        dot_backward_and_step(opt, losses_for(params, step))
    return params


@pytest.mark.parametrize("wd", [0.0, WD])
def test_dot_updates_match_the_rule(wd: float) -> None:
    start = [p.detach().numpy().copy() for p in make_params()]
    got = run_dot(4, wd)
    want = numpy_dot(start, 4, wd)
    for g, w in zip(got, want, strict=True):
        assert g.detach().numpy() == pytest.approx(w, rel=1e-5, abs=1e-6)


def test_dot_at_delta_zero_is_sgd_on_the_summed_loss() -> None:
    dot = run_dot(5, WD, delta=0.0)
    params = make_params()
    sgd = torch.optim.SGD(params, lr=LR, momentum=M, weight_decay=WD)
    for step in range(5):
        backward_and_step(sgd, losses_for(params, step), params)
    for a, b in zip(dot, params, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(run_dot(5, WD)[0], params[0], atol=1e-4)  # delta > 0 changes the path


def test_dot_clips_the_norm_of_the_summed_gradient() -> None:
    params = make_params()
    opt = DistillationOrientedSGD(params, lr=1.0, momentum=M, delta=DELTA)
    losses = losses_for(params, 0)
    task, kd = numpy_grads([p.detach().numpy() for p in params], 0)
    total = [(t if t is not None else 0) + (k if k is not None else 0) for t, k in zip(task, kd, strict=True)]
    norm = float(np.sqrt(sum((g**2).sum() for g in total)))
    before = [p.detach().clone() for p in params]
    dot_backward_and_step(opt, losses, grad_clip=norm / 4)
    moved = torch.cat([(b - p.detach()) for b, p in zip(before, params, strict=True)])  # lr 1, first step
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(norm / 4, rel=1e-4)


def test_dot_state_round_trips_and_a_task_only_loss_is_plain_sgd() -> None:
    params = make_params()
    opt = DistillationOrientedSGD(params, lr=LR, momentum=M, delta=DELTA)
    dot_backward_and_step(opt, losses_for(params, 0))
    state = opt.state_dict()
    assert {"momentum_buffer", "kd_momentum_buffer"} <= set(state["state"][0])
    clone = DistillationOrientedSGD(make_params(), lr=LR, momentum=M, delta=DELTA)
    clone.load_state_dict(state)
    assert torch.equal(
        clone.state_dict()["state"][0]["kd_momentum_buffer"], state["state"][0]["kd_momentum_buffer"]
    )
    # the student alone (only "ce"): one backward pass, the task buffer only
    lone = make_params()
    opt = DistillationOrientedSGD(lone, lr=LR, momentum=M, delta=DELTA)
    dot_backward_and_step(opt, {"ce": (lone[1] ** 2).sum()})
    assert set(opt.state[lone[1]]) == {"momentum_buffer"} and lone[0].grad is None


def test_build_optimizer_makes_dot_from_sgd_only() -> None:
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, "sgd", lr=0.05, momentum=0.9, dot_delta=0.075)
    assert isinstance(opt, DistillationOrientedSGD)
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]  # biases keep no weight decay
    with pytest.raises(ConfigError, match="variant of SGD"):
        build_optimizer(model, "adamw", lr=0.05, dot_delta=0.075)
    with pytest.raises(ConfigError, match="momentum"):
        build_optimizer(model, "sgd", lr=0.05, momentum=0.95, dot_delta=0.075)


def test_distillation_with_dot(distill_config, teacher_ckpt: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="variant of SGD"):
        distill_config(teacher_ckpt, tmp_path / "x", dot=True, optimizer="adamw")
    with pytest.raises(ConfigError, match="dot_delta"):
        distill_config(teacher_ckpt, tmp_path / "x", dot=True, dot_delta=0.2)
    plain = distill(distill_config(teacher_ckpt, tmp_path / "sgd", epochs=1), log=None)
    dot = distill(distill_config(teacher_ckpt, tmp_path / "dot", epochs=1, dot=True), log=None)
    assert dot.history[0]["train_loss_kd"] > 0
    assert dot.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], rel=1e-9)
