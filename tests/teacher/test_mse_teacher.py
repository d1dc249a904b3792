"""Teachers trained with the squared error of the softmax output to the one-hot label (ECCV 2024): the
loss against NumPy, its minimiser (the class frequencies), and `train-teacher --loss mse` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calikd.errors import ConfigError
from calikd.teacher import TeacherConfig, train_teacher
from calikd.teacher.losses import probability_mse_loss, teacher_loss
from calikd.utils.config import config_from_dict

LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 0.3, -0.2], [1.5, 1.5, -3.0]])
LABELS = np.array([0, 2, 1])


def ref_mse(z: np.ndarray, y: np.ndarray, eps: float) -> float:
    total = 0.0
    for row, label in zip(z, y, strict=True):
        p = np.exp(row - row.max())
        p /= p.sum()
        target = np.full(len(row), eps / len(row))
        target[label] += 1 - eps
        total += float(((p - target) ** 2).sum())
    return total / len(z)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_probability_mse_matches_reference(eps: float) -> None:
    z, y = torch.tensor(LOGITS).float(), torch.tensor(LABELS)
    assert probability_mse_loss(z, y, eps).item() == pytest.approx(ref_mse(LOGITS, LABELS, eps), rel=1e-6)
    assert teacher_loss(z, y, "mse", eps).item() == pytest.approx(ref_mse(LOGITS, LABELS, eps), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(z, y, label_smoothing=eps).item()
    assert teacher_loss(z, y, "ce", eps).item() == pytest.approx(ce, rel=1e-6)
    assert probability_mse_loss(z + 7.0, y).item() == pytest.approx(
        probability_mse_loss(z, y).item(), rel=1e-5
    )
    with pytest.raises(ConfigError, match="unknown teacher loss"):
        teacher_loss(z, y, "mae")


def test_probability_mse_is_minimised_by_the_class_frequencies() -> None:
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    z = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        probability_mse_loss(z.expand(10, 3), labels).backward()
        opt.step()
    assert torch.softmax(z, 1).flatten().tolist() == pytest.approx([0.6, 0.3, 0.1], abs=2e-3)


def test_train_teacher_with_mse_loss(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loss"):
        config_from_dict(TeacherConfig, {"loss": "mae"}, source="test")
    cfg = TeacherConfig(
        dataset="synthetic",
        dataset_options={"train_size": 640, "test_size": 200, "seed": 3},
        model="cnn",
        model_kwargs={"width": 8},
        epochs=4,
        batch_size=64,
        lr=0.5,  # the squared error's gradients are small: a larger step than cross-entropy's 0.1
        loss="mse",
        precision="fp32",
        device="cpu",
        progress=False,
        out=str(tmp_path / "mse"),
    )
    result = train_teacher(cfg, log=None)
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert 0 < last < first <= 2.0  # a squared error of probability vectors is at most 2
    assert result.test_last["accuracy"] > 0.2  # 10 classes: chance is 0.1
    assert json.loads((tmp_path / "mse" / "last.json").read_text())["config"]["loss"] == "mse"
