"""Student alone: cross-entropy only, no teacher (the baseline every KD result is compared with)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from calikd.distill.base import Distiller, DistillerConfig, DistillStep
from calikd.distill.registry import register_distiller
from calikd.utils.config import option


@dataclass
class CEConfig(DistillerConfig):
    """Only ``ce_weight`` matters; ``kd_weight`` is unused."""

    kd_weight: float = option(0.0, "unused: the baseline has no distillation term", min=0.0, max=0.0)


@register_distiller("ce")
class StudentAlone(Distiller):
    """Student trained alone with cross-entropy (the teacher, if given, is ignored)."""

    config_class = CEConfig
    needs_teacher = False
    source = "the student alone (baseline)"

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        return self.ce_term(step)
