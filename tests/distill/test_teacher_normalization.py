"""A teacher whose checkpoint records another normalisation than the dataset's sees its own."""

from __future__ import annotations

import pytest
import torch

from calikd.augment import AugmentConfig
from calikd.data import DatasetInfo
from calikd.distill.inputs import DistillInputs
from calikd.errors import ConfigError

INFO = DatasetInfo(
    name="d", num_classes=3, in_channels=2, image_size=(8, 8), mean=(0.4, 0.5), std=(0.2, 0.25),
    hflip=True, crop_padding=2, classes=("a", "b", "c"),
)  # fmt: skip


def _images(n: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (n, 2, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.mark.parametrize("resolution", [None, 4])
def test_teacher_inputs_follow_the_teachers_normalisation(resolution) -> None:
    raw = ((0.0, 0.0), (1.0, 1.0))  # a teacher trained on raw [0, 1] pixels
    inputs = DistillInputs(
        INFO, teacher_normalization=raw, student_resolution=resolution, teacher_input="full"
    )
    images = _images()
    torch.testing.assert_close(inputs.teacher_eval(images), images.float() / 255.0, rtol=1e-5, atol=1e-5)
    step = inputs.train_step(images, torch.arange(6) % 3, torch.Generator().manual_seed(1))
    same = DistillInputs(INFO, student_resolution=resolution)  # the same draws, the dataset's normalisation
    ref = same.train_step(images, torch.arange(6) % 3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(step.student, ref.student, rtol=0, atol=0)  # the student is untouched
    mean, std = torch.tensor(INFO.mean).view(1, -1, 1, 1), torch.tensor(INFO.std).view(1, -1, 1, 1)
    torch.testing.assert_close(step.teacher, ref.teacher * std + mean, rtol=1e-5, atol=1e-5)
    assert inputs.describe()["teacher_normalization"] == {"mean": [0.0, 0.0], "std": [1.0, 1.0]}


def test_the_datasets_own_normalisation_changes_nothing() -> None:
    inputs = DistillInputs(INFO, teacher_normalization=(INFO.mean, INFO.std), kd_augment=AugmentConfig())
    assert inputs.teacher_normalization is None and "teacher_normalization" not in inputs.describe()
    images = _images()
    assert torch.equal(inputs.teacher_eval(images), DistillInputs(INFO).teacher_eval(images))
    with pytest.raises(ConfigError, match="1 mean / 1 std values for 2 input channel"):
        DistillInputs(INFO, teacher_normalization=((0.0,), (1.0,)))
