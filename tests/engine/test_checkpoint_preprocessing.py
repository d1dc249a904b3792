"""A model always sees its inputs the way its checkpoint says: normalisation from the checkpoint, never the
dataset's, and a clear error when the checkpoint does not say."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from calikd.data import load_dataset
from calikd.engine.evaluate import checkpoint_logits
from calikd.errors import CheckpointError
from calikd.models import create_model
from calikd.store import checkpoint_dataset, checkpoint_preprocessing, save_checkpoint

SYN = {"train_size": 200, "test_size": 60, "num_classes": 4, "image_size": 8, "in_channels": 1}


def _meta(**over):
    meta = {
        "model": {"name": "mlp", "kwargs": {"width": 16}}, "num_classes": 4, "in_channels": 1,
        "input_size": [8, 8], "normalization": {"mean": [0.0], "std": [1.0]},
        "dataset": {"name": "synthetic", "options": SYN},
    }  # fmt: skip
    meta.update(over)
    return meta


def test_a_foreign_model_is_fed_with_its_own_normalisation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mlp", 4, 1, width=16).eval()
    save_checkpoint(tmp_path / "mine", model, _meta())  # trained on raw [0, 1] pixels: mean 0, std 1
    data = load_dataset("synthetic", **SYN)
    assert data.info.mean != (0.0,)  # the dataset's own statistics differ: using them would be wrong
    out = checkpoint_logits(tmp_path / "mine", ["test"])
    logits, labels = out.logits["test"]
    with torch.no_grad():
        want = model(data.test.images.float() / 255.0)
    torch.testing.assert_close(logits, want)
    assert torch.equal(labels, data.test.labels)
    # a bare dataset name in the metadata works too
    save_checkpoint(tmp_path / "named", model, _meta(dataset="synthetic"))
    assert checkpoint_dataset(_meta(dataset="synthetic")) == {"name": "synthetic"}


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"normalization": None}, "does not record the normalization"),
        ({"normalization": {"mean": [0.1]}}, "does not record the normalization"),
        ({"normalization": {"mean": [0.1, 0.2], "std": [1.0]}}, "one number per input channel"),
        ({"normalization": {"mean": [0.1], "std": [0.0]}}, "std must be positive"),
        ({"normalization": {"mean": ["a"], "std": [1.0]}}, "not a finite number"),
        ({"in_channels": None}, "does not record in_channels"),
        ({"input_size": [8]}, r"input_size must be \[H, W\]"),
    ],
)
def test_missing_or_inconsistent_preprocessing_is_a_clear_error(over, match) -> None:
    with pytest.raises(CheckpointError, match=match):
        checkpoint_preprocessing(_meta(**over), "ckpt")


def test_a_checkpoint_without_normalisation_is_refused_at_load_time(tmp_path: Path) -> None:
    model = create_model("mlp", 4, 1, width=16)
    meta = _meta()
    del meta["normalization"]
    save_checkpoint(tmp_path / "bare", model, meta)
    with pytest.raises(CheckpointError, match="never guesses it from the dataset"):
        checkpoint_logits(tmp_path / "bare", ["test"])
    with pytest.raises(CheckpointError, match="dataset must be a name or a mapping"):
        checkpoint_dataset({"dataset": 3}, "ckpt")
