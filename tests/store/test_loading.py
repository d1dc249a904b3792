"""load_model / load_state_into: strict loading and errors that name both sides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from calikd.errors import CheckpointError
from calikd.store import load_model, load_state_into, save_checkpoint
from calikd.store.loading import describe


@pytest.fixture
def saved(factory, tmp_path: Path, tiny_meta) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = factory("tiny", num_classes=10, in_channels=3, width=4)
    model.train()(torch.randn(4, 3, 8, 8))
    save_checkpoint(tmp_path / "run" / "last", model, tiny_meta)
    return tmp_path / "run", model.eval()


def test_describe_fixed_values(tiny_meta) -> None:
    assert describe(tiny_meta) == "a tiny for 10 classes"
    assert describe({}) == "a model of unknown name for an unknown number of classes"


def test_load_model_rebuilds_the_model(saved, factory) -> None:
    run, want = saved
    model, meta = load_model(run, expect_num_classes=10, expect_model="TINY", factory=factory)
    assert not model.training and meta["epoch"] == 3
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), want(x))
    assert next(model.parameters()).device.type == "cpu"


def test_wrong_class_count_or_model_names_both_sides(saved, factory) -> None:
    run, _ = saved
    with pytest.raises(CheckpointError, match=r"is a tiny for 10 classes, but 100 classes were asked for"):
        load_model(run, expect_num_classes=100, factory=factory)
    with pytest.raises(
        CheckpointError, match=r"is a tiny for 10 classes, but model 'resnet20' was asked for"
    ):
        load_model(run, expect_model="resnet20", factory=factory)


def test_weights_that_do_not_fit_the_described_model(factory, tmp_path: Path, tiny_meta) -> None:
    wrong = factory("tiny", num_classes=100, in_channels=3, width=4)  # metadata below says 10 classes
    save_checkpoint(tmp_path / "m", wrong, tiny_meta)
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "m", factory=factory)
    text = str(exc.value)
    assert "(a tiny for 10 classes, 3 input channels) does not fit the Sequential model" in text
    assert "shape mismatches: 5.weight (100, 4) in the checkpoint vs (10, 4) in the model" in text
    assert "5.bias (100,)" in text and "missing keys" not in text


def test_load_state_into_lists_the_first_few_keys(factory) -> None:
    model = factory("tiny", num_classes=10, in_channels=3)
    sd = dict(model.state_dict())
    del sd["0.weight"]
    sd.update({f"extra.{i}": torch.zeros(1) for i in range(7)})
    with pytest.raises(CheckpointError) as exc:
        load_state_into(model, sd, source="checkpoint 'x'")
    text = str(exc.value)
    assert text.startswith("checkpoint 'x' does not fit the Sequential model built for it;")
    assert "missing keys: 0.weight;" in text
    assert "unexpected keys: extra.0, extra.1, extra.2, extra.3, extra.4, ... (2 more)" in text
    assert "extra.5" not in text


def test_load_state_into_loads_exactly(factory) -> None:
    torch.manual_seed(1)
    src = factory("tiny", num_classes=10, in_channels=3)
    dst = factory("tiny", num_classes=10, in_channels=3)
    load_state_into(dst, src.state_dict())
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_metadata_without_a_model_cannot_be_rebuilt(tmp_path: Path, factory) -> None:
    save_checkpoint(tmp_path / "m", {"w": torch.ones(1)}, {"epoch": 1})
    with pytest.raises(CheckpointError, match="does not say which model it holds"):
        load_model(tmp_path / "m", factory=factory)
    save_checkpoint(tmp_path / "m", {"w": torch.ones(1)}, {"model": {"name": "tiny", "kwargs": {}}})
    with pytest.raises(CheckpointError, match="malformed model metadata"):
        load_model(tmp_path / "m", factory=factory)
