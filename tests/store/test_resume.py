"""Exact resume: optimizer, LR scheduler and RNG state survive a checkpoint bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as sched

from calikd.store import load_state_into, pack_tree, read_checkpoint, save_checkpoint, unpack_tree

STEPS, SPLIT = 8, 3


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def _adamw(params):
    return torch.optim.AdamW(params, lr=0.01, weight_decay=0.05)


CASES: dict[str, tuple[Callable, Callable]] = {
    "sgd-multistep": (_sgd, lambda o: sched.MultiStepLR(o, milestones=[2, 4, 4], gamma=0.5)),
    "adamw-onecycle": (_adamw, lambda o: sched.OneCycleLR(o, max_lr=0.05, total_steps=STEPS)),
    "sgd-cosine": (_sgd, lambda o: sched.CosineAnnealingLR(o, T_max=STEPS, eta_min=1e-4)),
    "adamw-sequential": (
        _adamw,
        lambda o: sched.SequentialLR(
            o, [sched.LinearLR(o, 0.1, total_iters=2), sched.CosineAnnealingLR(o, T_max=6)], milestones=[2]
        ),
    ),
    "sgd-plateau": (_sgd, lambda o: sched.ReduceLROnPlateau(o, patience=0, factor=0.5)),
}


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def _train(model, opt, scheduler, steps: int) -> None:
    """Data and dropout draw from the global RNG, so resuming also needs the RNG state."""
    for _ in range(steps):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if isinstance(scheduler, sched.ReduceLROnPlateau):
            scheduler.step(1.0)  # never improves: the LR drops every step
        else:
            scheduler.step()


def _setup(case: str, seed: int):
    make_opt, make_sched = CASES[case]
    torch.manual_seed(seed)
    model = _model()
    opt = make_opt(model.parameters())
    return model, opt, make_sched(opt)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_is_bitwise_identical(case: str, tmp_path: Path, tree_equal, tiny_meta) -> None:
    model, opt, scheduler = _setup(case, seed=0)
    _train(model, opt, scheduler, STEPS)
    want_params, want_opt = model.state_dict(), opt.state_dict()

    model, opt, scheduler = _setup(case, seed=0)
    _train(model, opt, scheduler, SPLIT)
    train_state = {
        "optimizer": opt.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "epoch": 0,
        "step": SPLIT,
    }
    save_checkpoint(tmp_path / "last", model, tiny_meta, train_state=train_state)

    model, opt, scheduler = _setup(case, seed=1234)  # a fresh process: other init, other RNG
    ckpt = read_checkpoint(tmp_path)
    load_state_into(model, ckpt.state_dict)
    state = ckpt.load_train_state()
    tree_equal(state["optimizer"], train_state["optimizer"])
    tree_equal(state["scheduler"], train_state["scheduler"])
    opt.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    assert state["step"] == SPLIT
    _train(model, opt, scheduler, STEPS - SPLIT)

    tree_equal(model.state_dict(), want_params)
    tree_equal(opt.state_dict(), want_opt)


def test_multisteplr_milestones_stay_a_counter(tree_equal) -> None:
    _, _, scheduler = _setup("sgd-multistep", seed=0)
    sd = scheduler.state_dict()
    got = unpack_tree(*pack_tree(sd))
    assert type(got["milestones"]) is type(sd["milestones"])
    tree_equal(got, sd)


def test_plateau_infinities_and_grad_scaler_round_trip(tree_equal) -> None:
    _, _, plateau = _setup("sgd-plateau", seed=0)
    state = {"plateau": plateau.state_dict(), "scaler": torch.amp.GradScaler("cpu").state_dict()}
    assert state["plateau"]["best"] == float("inf")
    tree_equal(unpack_tree(*pack_tree(state)), state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rng_states_round_trip(tree_equal) -> None:
    state = {"cuda": torch.cuda.get_rng_state_all(), "cpu": torch.get_rng_state()}
    tree_equal(unpack_tree(*pack_tree(state)), state)
