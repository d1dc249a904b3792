"""Neural selective transfer (Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer", arXiv 2017).

Each channel of a feature map ``(B, C, H, W)`` is one sample of the layer's distribution of neuron
selectivity patterns: its ``H*W`` responses, L2-normalised. The loss is the squared maximum mean discrepancy
between the student's ``C_s`` channels and the teacher's ``C_t`` channels under the polynomial kernel
``k(x, y) = (<x, y> + c)^d``, per sample, averaged over the batch and summed over the tapped stages:

    MMD^2 = mean_{i,i'} k(t_i, t_i') + mean_{j,j'} k(s_j, s_j') - 2 mean_{i,j} k(s_j, t_i)

(the teacher-teacher term is constant: it makes the loss a true, non-negative MMD). As in RepDistiller, a
map larger than its partner is adaptive-average-pooled to the partner's size first; the channel counts may
differ (no projector).

Defaults: the CRD benchmark's CIFAR-100 recipe (RepDistiller ``scripts/run_cifar_distill.sh``: ``--distill
nst -a 0 -b 50``; ``distiller_zoo/NST.py``: ``d = 2``, ``c = 0``, every intermediate stage ``feat[1:-1]``):
CE weight 1, NST weight (beta) 50, no KD term. The paper's polynomial kernel also uses ``d = 2``, ``c = 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.methods.at import paired_stage_defaults, pool_to_common_size
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def _selectivity(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, C, prod(spatial))`` with each channel's responses L2-normalised."""
    if x.ndim < 3:
        raise ConfigError(
            f"NST needs feature maps (B, C, H, W), got shape {tuple(x.shape)}: tap convolutional stages"
        )
    return F.normalize(x.float().flatten(2), p=2, dim=2)


def _poly_kernel_mean(a: torch.Tensor, b: torch.Tensor, degree: int, offset: float) -> torch.Tensor:
    with torch.autocast(a.device.type, enabled=False):  # float32 kernels under mixed precision
        return (torch.bmm(a.float(), b.float().transpose(1, 2)) + offset).pow(degree).mean()


def nst_loss(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, degree: int = 2, offset: float = 0.0
) -> torch.Tensor:
    """Squared MMD between the student's and the teacher's normalised channels (polynomial kernel)."""
    if student_feat.shape[0] != teacher_feat.shape[0]:
        raise ConfigError(
            f"NST needs the same batch for student and teacher, got {student_feat.shape[0]} and "
            f"{teacher_feat.shape[0]} samples"
        )
    s, t = pool_to_common_size(student_feat.float(), teacher_feat.float())
    s, t = _selectivity(s), _selectivity(t)
    return (
        _poly_kernel_mean(t, t, degree, offset).detach()
        + _poly_kernel_mean(s, s, degree, offset)
        - 2.0 * _poly_kernel_mean(s, t, degree, offset)
    )


@dataclass
class NSTConfig(DistillerConfig):
    """Options of NST. The CRD benchmark uses the same values for every pair."""

    kd_weight: float = option(50.0, "weight (beta) of the NST term", min=0.0)
    degree: int = option(2, "degree d of the polynomial kernel (<x, y> + c)^d", min=1)
    offset: float = option(0.0, "constant c of the polynomial kernel", min=0.0)
    student_layers: list[str] = option(
        [], "student stages (names or indices); empty = every intermediate stage (no stem, no embedding)"
    )
    teacher_layers: list[str] = option(
        [], "teacher stages (names or indices); empty = every intermediate stage (no stem, no embedding)"
    )


@register_distiller("nst")
class NST(FeatureDistiller):
    """Neural selective transfer: MMD (polynomial kernel) between channel selectivity distributions."""

    config_class = NSTConfig
    source = "Huang & Wang, arXiv 2017; defaults: RepDistiller scripts/run_cifar_distill.sh (-b 50), NST.py"

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        return paired_stage_defaults(
            self.student, self.teacher, self.config.student_layers, self.config.teacher_layers
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, shape in (*self.student_feature_shapes.items(), *self.teacher_feature_shapes.items()):
            if len(shape) < 2:
                raise ConfigError(f"NST needs feature maps (C, H, W), but '{name}' has shape {tuple(shape)}")

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        total = sum(nst_loss(s, t, cfg.degree, cfg.offset) for s, t in self.feature_pairs(step))
        return {**self.ce_term(step), "nst": cfg.kd_weight * total}
