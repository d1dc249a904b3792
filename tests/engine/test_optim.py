"""LR schedules and optimizers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from calikd.engine.optim import build_optimizer, build_scheduler, lr_factor
from calikd.errors import ConfigError


def test_multistep_with_warmup() -> None:
    f = [lr_factor(s, 100, schedule="multistep", warmup_steps=4, milestones=[50, 75]) for s in range(100)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == 1.0 and f[49] == 1.0
    assert f[50] == pytest.approx(0.1) and f[74] == pytest.approx(0.1)
    assert f[75] == pytest.approx(0.01) and f[99] == pytest.approx(0.01)


def test_cosine_and_onecycle_shapes() -> None:
    assert lr_factor(0, 100, schedule="cosine") == 1.0
    assert lr_factor(50, 100, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, schedule="cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 100, schedule="onecycle") == pytest.approx(1 / 25)
    assert lr_factor(30, 100, schedule="onecycle") == pytest.approx(1.0)
    assert lr_factor(100, 100, schedule="onecycle") == pytest.approx(1e-4)
    mid = lr_factor(65, 100, schedule="onecycle")
    assert mid == pytest.approx(1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * 0.5)) / 2)


def test_scheduler_steps_per_iteration_and_weight_decay_groups() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, "sgd", lr=0.2, weight_decay=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-3, 0.0]
    assert len(opt.param_groups[0]["params"]) == 2  # the two weight matrices
    sched = build_scheduler(opt, "multistep", epochs=4, steps_per_epoch=10, milestones=[2.0])
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[19] == pytest.approx(0.2) and lrs[20] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "sgdd"}, "did you mean 'sgd'"),
        ({"lr": -0.1}, "learning rate must be > 0"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
    ],
)
def test_optimizer_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_optimizer(nn.Linear(2, 2), **kwargs)


def test_adamw_builds() -> None:
    opt = build_optimizer(nn.Linear(2, 2), "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)


def test_parts_with_their_own_learning_rate_keep_the_weight_decay_split() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Linear(4, 2)))
    opt = build_optimizer(model, lr=0.1, weight_decay=1e-3, part_lrs={"2": 0.01})
    groups = [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups]
    # the run's rate: Linear weight (decayed); Linear bias + BN weight and bias; then part "2"
    assert groups == [(0.1, 1e-3, 1), (0.1, 0.0, 3), (0.01, 1e-3, 1), (0.01, 0.0, 1)]
    assert opt.param_groups[2]["params"][0] is model[2][0].weight
    with pytest.raises(ValueError, match="no trainable parameters under"):
        build_optimizer(model, lr=0.1, part_lrs={"20": 0.01})  # "2" is not a prefix match of "20"
