"""From a uint8 batch to what the student and the teacher see in one distillation step.

Order: crop/flip (uint8) -> the KD augmentation (cutout, mixup, CutMix or AugMix on [0, 1] floats, one draw
for both models) -> normalisation -> the student's resolution (cross-quality KD) -> the teacher's view: the
full-resolution image, or the student's low-resolution one scaled back to full size (``teacher_input="low"``).
Every random draw comes from the generator passed in, so a ``(seed, epoch)`` fixes every input.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from calikd.augment import AugmentConfig, BatchAugment
from calikd.data import DatasetInfo, build_eval_transform, build_train_transform
from calikd.data.resolution import ResolutionTransform
from calikd.errors import ConfigError
from calikd.utils.config import config_fields


@dataclass
class StepInputs:
    """One training step's inputs: ``views`` = 3 for AugMix with its JS term (clean, aug1, aug2 stacked)."""

    student: torch.Tensor
    teacher: torch.Tensor
    target: torch.Tensor
    views: int


def student_resolution_transform(
    value: float | None, *, mode: str = "area", upscale: bool = False
) -> ResolutionTransform | None:
    """``None`` (full resolution), a side in pixels (>= 1) or a factor in (0, 1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
        raise ConfigError(f"student_resolution must be a positive number, got {value!r}")
    if value >= 1:
        if float(value) != int(value):
            raise ConfigError(f"student_resolution {value} must be whole pixels (>= 1) or a factor in (0, 1)")
        return ResolutionTransform(size=int(value), mode=mode, upscale=upscale)
    return ResolutionTransform(factor=float(value), mode=mode, upscale=upscale)


def _other_normalization(
    info: DatasetInfo, given: tuple[Sequence[float], Sequence[float]] | None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The teacher's ``(mean, std)`` when it differs from the dataset's, else None (inputs shared as is)."""
    if given is None:
        return None
    mean, std = (tuple(float(v) for v in given[0]), tuple(float(v) for v in given[1]))
    if len(mean) != info.in_channels or len(std) != info.in_channels:
        raise ConfigError(
            f"the teacher's normalization has {len(mean)} mean / {len(std)} std values for "
            f"{info.in_channels} input channel(s)"
        )
    if (mean, std) == (tuple(info.mean), tuple(info.std)):
        return None
    return mean, std


class DistillInputs:
    """Builds :class:`StepInputs` for training and the student's evaluation transform."""

    def __init__(
        self,
        info: DatasetInfo,
        *,
        augment: bool = True,
        crop_padding: int | None = None,
        hflip: bool | None = None,
        kd_augment: AugmentConfig | None = None,
        student_resolution: float | None = None,
        resolution_mode: str = "area",
        student_upscale: bool = False,
        teacher_input: str = "full",
        teacher_normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        """``teacher_normalization``: the ``(mean, std)`` the teacher's checkpoint records, when it differs
        from the dataset's (a teacher trained elsewhere): the teacher's inputs are re-normalised to it."""
        if teacher_input not in ("full", "low"):
            raise ConfigError(f"teacher_input must be 'full' or 'low', got {teacher_input!r}")
        self.info = info
        self.geometric = (
            build_train_transform(info, crop_padding=crop_padding, hflip=hflip) if augment else None
        )
        self.kd_augment = kd_augment or AugmentConfig()
        self.batch_augment = BatchAugment(self.kd_augment, info.num_classes, fill=info.mean)
        self.normalizer = build_eval_transform(info)
        self.resolution = student_resolution_transform(
            student_resolution, mode=resolution_mode, upscale=student_upscale
        )
        self.teacher_input = teacher_input
        self.teacher_normalization = _other_normalization(info, teacher_normalization)
        if teacher_input == "low" and self.resolution is None:
            raise ConfigError("teacher_input 'low' needs a --student-resolution to lower the images to")

    @property
    def random_teacher_input(self) -> bool:
        """Whether the teacher's input changes between epochs (random crops, flips or KD augmentation)."""
        geometric = self.geometric is not None and (self.geometric.crop_padding > 0 or self.geometric.hflip)
        return geometric or self.kd_augment.kd_augment != "none"

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings (recorded in checkpoints and teacher-logit cache keys)."""
        return {
            "geometric": repr(self.geometric) if self.geometric is not None else None,
            "kd_augment": {name: getattr(self.kd_augment, name) for name in config_fields(AugmentConfig)},
            "student_resolution": self.resolution.to_dict() if self.resolution is not None else None,
            "teacher_input": self.teacher_input,
            "normalization": {"mean": list(self.info.mean), "std": list(self.info.std)},
            **(
                {"teacher_normalization": {"mean": list(self.teacher_normalization[0]),
                                           "std": list(self.teacher_normalization[1])}}
                if self.teacher_normalization is not None else {}
            ),
        }  # fmt: skip

    def _low(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.resolution is None else self.resolution(x)

    def _teacher_view(self, full: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        return self._renormalize(self._teacher_pixels(full, student))

    def _teacher_pixels(self, full: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        if self.teacher_input == "full":
            return full
        if student.shape[-2:] == full.shape[-2:]:
            return student
        return torch.nn.functional.interpolate(
            student, size=full.shape[-2:], mode="bilinear", align_corners=False
        )

    def _renormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Dataset-normalised ``x`` -> normalised as the teacher expects: an affine map per channel,
        ``x * s_d / s_t + (m_d - m_t) / s_t`` (resizing commutes with it)."""
        if self.teacher_normalization is None:
            return x
        (m_t, s_t), m_d, s_d = self.teacher_normalization, self.info.mean, self.info.std
        shape = (1, -1, 1, 1)
        scale = torch.tensor([d / t for d, t in zip(s_d, s_t, strict=True)], dtype=x.dtype, device=x.device)
        shift = torch.tensor(
            [(md - mt) / t for md, mt, t in zip(m_d, m_t, s_t, strict=True)], dtype=x.dtype, device=x.device
        )
        return x * scale.view(shape) + shift.view(shape)

    def train_step(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> StepInputs:
        """Inputs of one training step from a uint8 batch and its labels."""
        x = self.geometric.geometric(images, generator) if self.geometric is not None else images
        x01 = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x
        augmented = self.batch_augment(x01, labels, generator)
        full = self.normalizer(augmented.images)
        student = self._low(full)
        return StepInputs(
            student=student,
            teacher=self._teacher_view(full, student),
            target=augmented.target,
            views=augmented.views,
        )

    def student_eval(self, images: torch.Tensor) -> torch.Tensor:
        """The student's evaluation input: normalised, at the student's resolution."""
        return self._low(self.normalizer(images))

    def teacher_full_eval(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's own evaluation input at full resolution: normalised as its checkpoint says."""
        return self._renormalize(self.normalizer(images))

    def teacher_normalization_dict(self) -> dict[str, list[float]]:
        """The normalisation the teacher sees (its checkpoint's; the dataset's when they agree)."""
        mean, std = self.teacher_normalization or (self.info.mean, self.info.std)
        return {"mean": list(mean), "std": list(std)}

    def teacher_eval(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's evaluation input in the variant it is distilled with."""
        full = self.normalizer(images)
        return self._teacher_view(full, self._low(full))
