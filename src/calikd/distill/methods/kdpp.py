"""KD++: KD with the ND loss (Wang et al., "Improving Knowledge Distillation via Regularizing Feature Norm
and Direction", ICCV 2023).

The ND loss pulls the student's embedding ``s_i`` (the pooled feature before ``fc``; projected to the
teacher's width by BN - dropout 0.5 - linear when the widths differ, the authors' ``EmbTrans``) along the
direction of its class centre ``c_y`` (the mean teacher embedding of class ``y`` over the training set), and
rewards a large norm along it, up to the larger of the two embedding norms:

    L_ND = 1/B sum_i [ 1 - <s_i, c_{y_i} / ||c_{y_i}||> / max(||s_i||, ||t_i||) ]

KD++ adds it to the cross-entropy and to Hinton's KD (``T^2``-scaled KL at temperature T, weight ramped
linearly over the first ``warmup_epochs``, as in the authors' ``train_cifar_kd.py``).

Class centres: the authors compute them once with the teacher over the training set and load them from
JSON. Here they are the running class means of the teacher's embeddings over the training batches of the
first ``center_epochs`` epochs (default 1: one pass over the training set, under the run's augmentation),
then frozen (under DDP the ranks' sums are added); a mixed (mixup/CutMix) target adds each embedding to
the classes with the target's weights. A class not seen yet has no direction and contributes ``1`` (the
loss of an orthogonal student). The centres are buffers, saved with the method's state for exact resume.

Defaults (CIFAR-100, the authors' ``CIFAR/train_cifar.sh`` and ``train_cifar_kd.py``): CE weight 1, KD
weight 1, T 4, KD warm-up 20 of 240 epochs (``epochs / 12``), ND weight 2 (resnet56 -> resnet20).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller, pair_table
from calikd.distill.methods.kd import kd_loss
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

WARMUP_FRACTION = 20 / 240  # the authors' --warm_up 20 of 240 epochs


def nd_loss(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``mean_i [1 - <s_i, unit(c_{y_i})> / max(||s_i||, ||t_i||)]``; a zero centre contributes 1."""
    s, t = student_emb.float().flatten(1), teacher_emb.float().flatten(1)
    if s.shape != t.shape or centers.shape[1] != s.shape[1]:
        raise ConfigError(
            f"ND needs student and teacher embeddings and class centres of one width, got {tuple(s.shape)}, "
            f"{tuple(t.shape)} and centres {tuple(centers.shape)}"
        )
    direction = F.normalize(centers.float()[labels.long()], p=2, dim=1)
    max_norm = torch.maximum(s.norm(dim=1), t.norm(dim=1)).clamp_min(1e-12)
    return (1.0 - (s * direction).sum(1) / max_norm).mean()


def embedding_projector(in_dim: int, out_dim: int) -> nn.Module:
    """The authors' ``EmbTrans``: BN - dropout 0.5 - linear (identity when the widths agree)."""
    if in_dim == out_dim:
        return nn.Identity()
    linear = nn.Linear(in_dim, out_dim)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(in_dim), nn.Dropout(0.5), linear)


def _num_classes(model: nn.Module) -> int:
    fc = getattr(model, "fc", None)
    for attr in ("module", "_orig_mod"):
        if fc is None and isinstance(getattr(model, attr, None), nn.Module):
            fc = getattr(getattr(model, attr), "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ConfigError(
            f"KD++ needs the teacher's final linear layer 'fc' ({type(model).__name__} has none)"
        )
    return fc.out_features


@dataclass
class KDPPConfig(DistillerConfig):
    """Options of KD++.

    The authors' per-pair weights (``CIFAR/train_cifar.sh``; CE 1, T 4 throughout), KD weight / ND weight:
    resnet56 -> resnet20 1 / 2; resnet32x4 -> resnet8x4 3.5 / 2; wrn_40_2 -> wrn_40_1 1 / 1.5;
    resnet50 -> mobilenetv2 3 / 0.5; resnet32x4 -> shufflenetv1 2.5 / 1.5; resnet32x4 -> shufflenetv2 4 / 0.5.
    """

    kd_weight: float = option(1.0, "weight of the KD term", min=0.0)
    nd_weight: float = option(2.0, "weight of the ND (norm and direction) term", min=0.0)
    tau: float = option(4.0, "distillation temperature T of the KD term", min=0.0, exclusive_min=True)
    warmup_epochs: float | None = option(
        None, "epochs over which the KD weight ramps linearly to 1 (default: epochs / 12; 0 = none)", min=0.0
    )
    center_epochs: int = option(1, "epochs whose teacher embeddings make the class centres", min=1)
    student_layers: list[str] = option([], "student embedding layer; empty = the pooled embedding (-1)")
    teacher_layers: list[str] = option([], "teacher embedding layer; empty = the pooled embedding (-1)")


@register_distiller("kdpp")
class KDPP(FeatureDistiller):
    """KD++: KD plus the ND loss (student embedding along the teacher's class centre, with a large norm)."""

    config_class = KDPPConfig
    warmup_fraction = WARMUP_FRACTION
    single_pair = True
    source = "Wang et al., ICCV 2023; defaults: authors' CIFAR/train_cifar.sh, train_cifar_kd.py, utils.py"
    pair_source = (
        "WangYZ1608/Knowledge-Distillation-via-ND CIFAR/train_cifar.sh @ fc6f3f9"
        " (--kd_loss_factor, --nd_loss_factor)"
    )
    pair_defaults = pair_table(
        {
            ("resnet56", "resnet20"): {"kd_weight": 1.0, "nd_weight": 2.0},
            ("resnet32x4", "resnet8x4"): {"kd_weight": 3.5, "nd_weight": 2.0},
            ("wrn_40_2", "wrn_40_1"): {"kd_weight": 1.0, "nd_weight": 1.5},
            ("resnet50", "mobilenetv2"): {"kd_weight": 3.0, "nd_weight": 0.5},
            ("resnet32x4", "shufflenetv1"): {"kd_weight": 2.5, "nd_weight": 1.5},
            ("resnet32x4", "shufflenetv2"): {"kd_weight": 4.0, "nd_weight": 0.5},
        }
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s_shape = self.student_feature_shapes[self.student_layer_names[0]]
        t_shape = self.teacher_feature_shapes[self.teacher_layer_names[0]]
        if len(s_shape) != 1 or len(t_shape) != 1:
            raise ConfigError(
                f"KD++ works on embeddings (vectors), got shapes {tuple(s_shape)} and {tuple(t_shape)}",
                hint="tap the pooled embedding (-1)",
            )
        self.projector = embedding_projector(s_shape[0], t_shape[0])
        num_classes = _num_classes(self.teacher)
        self.register_buffer("center_sum", torch.zeros(num_classes, t_shape[0], dtype=torch.float64))
        self.register_buffer("center_count", torch.zeros(num_classes, dtype=torch.float64))

    @torch.no_grad()
    def update_centers(self, teacher_emb: torch.Tensor, target: torch.Tensor) -> None:
        """Add the batch's teacher embeddings to the running class sums (weighted by a mixed target)."""
        n = self.center_count.shape[0]
        weights = F.one_hot(target.long(), n).double() if target.ndim == 1 else target.double()
        sums, counts = weights.t() @ teacher_emb.double().flatten(1), weights.sum(0)
        if dist.is_available() and dist.is_initialized():  # every rank's samples count (DDP)
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        self.center_sum += sums
        self.center_count += counts

    def centers(self) -> torch.Tensor:
        """The class centres so far (zero rows for classes not seen yet)."""
        return (self.center_sum / self.center_count.clamp_min(1e-12)[:, None]).float()

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        f_s, f_t = self.feature_pairs(step)[0]
        if self.training and self.epoch <= cfg.center_epochs:
            self.update_centers(f_t, step.target)
        s_emb = self.projector(f_s.float())
        nd = nd_loss(s_emb, f_t, self.centers(), step.labels)
        kd = kd_loss(step.student_logits, step.teacher_logits, cfg.tau)
        ramp = self.warmup_ramp()
        return {**self.ce_term(step), "kd": cfg.kd_weight * ramp * kd, "nd": cfg.nd_weight * nd}
