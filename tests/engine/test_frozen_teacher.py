"""The frozen teacher's fast paths: equal to the eager module within the tolerance on every model of the zoo,
chosen deterministically given the timings, forced paths kept, and a wrong path refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import calikd.engine.frozen as frozen
from calikd.engine.frozen import TEACHER_PATHS, can_compile, check_close, prepare_frozen, tolerance
from calikd.models import create_model, list_models
from calikd.utils.device import PRECISIONS

CPU = torch.device("cpu")
FP32 = PRECISIONS["fp32"]


def _input(name: str) -> torch.Tensor:
    """A small batch (every model of the zoo takes 12 px; the numerics do not depend on the size)."""
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def _teacher(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, 10, 3).eval().requires_grad_(False)
    for module in model.modules():  # batch-norm statistics other than the identity, as in a trained model
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def _prepare(model: nn.Module, x: torch.Tensor, path: str, **kwargs):
    return prepare_frozen(
        model, x, precision=FP32, device=CPU, requested=path, batches=10, model_key={"name": "t"}, **kwargs
    )


@pytest.mark.parametrize("name", list_models())
def test_channels_last_path_matches_eager_on_every_model(name: str) -> None:
    model, x = _teacher(name), _input(name)
    runner = _prepare(model, x, "channels_last")
    assert not runner.notes
    with torch.inference_mode():
        eager, fast = model(x), runner(x)
    assert check_close(eager, fast, FP32) is None
    scale = 1 + eager.abs().max()
    assert (eager - fast).abs().max() <= tolerance(FP32) * scale


@pytest.mark.skipif(not can_compile(CPU), reason="torch.compile needs a C++ compiler")
def test_compiled_path_matches_eager() -> None:
    model, x = _teacher("cnn_tiny"), _input("cnn_tiny")
    runner = _prepare(model, x, "compiled")
    assert runner.name == "compiled" and not runner.notes
    with torch.inference_mode():
        assert check_close(model(x), runner(x), FP32) is None


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(CPU), reason="torch.compile needs a C++ compiler")
@pytest.mark.parametrize("name", list_models())
def test_compiled_path_matches_eager_on_every_model(name: str) -> None:
    model, x = _teacher(name), _input(name)
    runner = _prepare(model, x, "compiled")
    with torch.inference_mode():
        assert check_close(model(x), runner(x), FP32) is None, runner.notes


@pytest.mark.parametrize(
    ("timings", "batches", "expected"),
    [
        ({"eager": 1.0, "channels_last": 0.5}, 60, "channels_last"),
        ({"eager": 0.5, "channels_last": 1.0}, 60, "eager"),
        ({"eager": 1.0, "channels_last": 0.99}, 60, "eager"),  # within the margin
        # compiled is only a candidate when the run repays the compile time
        ({"eager": 1.0, "channels_last": 0.5, "compiled": 0.1}, 60, "channels_last"),
        ({"eager": 1.0, "channels_last": 0.5, "compiled": 0.1}, 10_000, "compiled"),
    ],
)
def test_choice_is_deterministic_given_timings(timings, batches, expected, monkeypatch) -> None:
    monkeypatch.setattr(frozen, "can_compile", lambda _device: True)
    monkeypatch.setattr(frozen, "_build", lambda module, name: (module, name != "eager"))
    model, x = _teacher("cnn_tiny"), _input("cnn_tiny")
    runner = prepare_frozen(
        model, x, precision=FP32, device=CPU, batches=batches, model_key={"name": "t"}, timings=timings
    )
    assert runner.name == expected
    assert runner.images_per_s == {k: pytest.approx(2 / v) for k, v in timings.items()}


def test_short_runs_and_mlps_stay_eager() -> None:
    runner = prepare_frozen(
        _teacher("cnn_tiny"), _input("cnn_tiny"), precision=FP32, device=CPU, batches=3, model_key={}
    )
    assert (runner.name, runner.source) == ("eager", "static")
    mlp = _prepare(_teacher("mlp"), _input("mlp"), "channels_last")
    assert mlp.name == "eager"  # nothing to re-lay-out


@pytest.mark.parametrize("path", TEACHER_PATHS[:2])
def test_forced_path_is_kept(path: str) -> None:
    runner = _prepare(_teacher("cnn_tiny"), _input("cnn_tiny"), path)
    assert (runner.name, runner.source) == (path, "forced")


def test_a_path_outside_the_tolerance_falls_back_to_eager(monkeypatch) -> None:
    model, x = _teacher("cnn_tiny"), _input("cnn_tiny")

    def wrong(module, name):
        return (lambda inp: module(inp) + 1.0), True

    monkeypatch.setattr(frozen, "_build", wrong)
    runner = _prepare(model, x, "channels_last")
    assert runner.name == "eager" and "tolerance" in runner.notes[0]
    with torch.inference_mode():
        assert torch.equal(runner(x), model(x))
