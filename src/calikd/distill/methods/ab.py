"""Activation boundaries (Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries Formed by
Hidden Neurons", AAAI 2019).

The student learns where the teacher's neurons switch on: for each tapped stage, the student's pre-ReLU
feature, mapped by a connector ``r`` (1x1 conv + BN to the teacher's channels; identity when the shapes are
equal) to ``s = r(F_s)``, is pushed beyond a margin ``m`` on the side of the teacher's pre-ReLU response
``t``. The alternative (hinge-squared) loss of the paper's Eq. 6, summed over elements, per sample:

    l(s, t) = 1/B sum [ (s + m)^2 * 1{s > -m, t <= 0} + (s - m)^2 * 1{s <= m, t > 0} ]

Stages are weighted ``2^(i - n + 1)`` (the deepest 1, each shallower one half the next) and the sum is
scaled by ``3 / 1000``, as in RepDistiller's ``ABLoss``.

Training has two phases, as in the authors' code and RepDistiller (``--distill abound``): an
*initialisation* phase that trains the student's feature layers and the connectors with the AB loss alone
(no cross-entropy), then ordinary training with the cross-entropy (RepDistiller adds no AB term then:
``after_init_weight = 0``). RepDistiller runs 30 extra initialisation epochs (``--init_epochs 30``, SGD at
the base learning rate) before its 240 main epochs; here the initialisation is the first ``init_epochs`` of
the one schedule (default ``epochs / 8``, i.e. 30 of 240), so it shares the run's optimizer and learning rate
schedule. Features are the pre-ReLU taps of every intermediate stage (RepDistiller's ``preact``
``feat[1:-1]``; see :func:`calikd.models.preact_feature_stages`); a map larger than its partner is
average-pooled first.

Defaults (CIFAR-100, RepDistiller ``scripts/run_cifar_distill.sh``: ``--distill abound -a 0 -b 1``;
``distiller_zoo/AB.py``: margin 1): CE weight 1, AB weight 1, margin 1, same for every pair.
Not available under multi-process (DDP) training: parts are idle in one phase or the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.methods.at import paired_stage_defaults, pool_to_common_size
from calikd.distill.methods.fitnet import HintRegressor
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

AB_SCALE = 3.0 / 1000.0  # RepDistiller's ABLoss: losses / 1000 * 3
INIT_FRACTION = 30 / 240  # RepDistiller's --init_epochs 30 against its 240 epochs


def ab_stage_loss(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """The alternative activation-boundary loss of one stage, summed over elements, divided by the batch."""
    s, t = student_feat.float(), teacher_feat.float()
    if s.shape != t.shape:
        raise ConfigError(
            f"AB compares features of equal shapes, got {tuple(s.shape)} (student, after the connector) and "
            f"{tuple(t.shape)} (teacher)"
        )
    off = (s + margin).pow(2) * ((s > -margin) & (t <= 0)).float()
    on = (s - margin).pow(2) * ((s <= margin) & (t > 0)).float()
    return (off + on).sum() / s.shape[0]


def ab_loss(
    student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor], margin: float = 1.0
) -> torch.Tensor:
    """``3/1000 * sum_i 2^(i - n + 1) * l(s_i, t_i)`` over stages ordered shallow to deep."""
    n = len(student_feats)
    if n != len(teacher_feats) or n == 0:
        raise ConfigError(
            f"AB pairs stages one to one, got {n} student and {len(teacher_feats)} teacher maps"
        )
    total = sum(
        2.0 ** (i - n + 1) * ab_stage_loss(s, t, margin)
        for i, (s, t) in enumerate(zip(student_feats, teacher_feats, strict=True))
    )
    return AB_SCALE * total


def refuse_multi_process(method: str, why: str) -> None:
    """Raise :class:`ConfigError` under multi-process (DDP) training: ``why`` names the phase-wise parts
    that get no gradient in some steps, which DistributedDataParallel rejects."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ConfigError(
            f"method '{method}' cannot train under multi-process (DDP) training: {why}",
            hint="run it on one process (one device)",
        )


class ABConnector(nn.Module):
    """Identity when the student and teacher feature shapes are equal, else FitNet's regressor without ReLU
    (pool to the smaller size, 1x1 conv, BN), as RepDistiller's ``Connector``."""

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        same = tuple(student_shape) == tuple(teacher_shape)
        self.net = None if same else HintRegressor(student_shape, teacher_shape, relu=False)

    def forward(
        self, student_feat: torch.Tensor, teacher_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net is None:
            return pool_to_common_size(student_feat, teacher_feat)
        return self.net(student_feat, teacher_feat)


@dataclass
class ABConfig(DistillerConfig):
    """Options of AB. RepDistiller uses the same values for every pair."""

    kd_weight: float = option(1.0, "weight of the AB loss in the initialisation phase", min=0.0)
    margin: float = option(1.0, "margin m of the activation-boundary loss", min=0.0)
    init_epochs: float | None = option(
        None, "epochs of the AB-only initialisation phase (default: epochs / 8, i.e. 30 of 240)", min=0.0
    )
    after_init_weight: float = option(
        0.0, "weight of the AB loss after the initialisation (RepDistiller: 0, cross-entropy only)", min=0.0
    )
    student_layers: list[str] = option(
        [], "student stages; empty = the pre-ReLU taps of every intermediate stage"
    )
    teacher_layers: list[str] = option(
        [], "teacher stages; empty = the pre-ReLU taps of every intermediate stage"
    )


@register_distiller("ab")
class AB(FeatureDistiller):
    """Activation boundaries: AB-loss initialisation of the student's pre-ReLU features, then CE."""

    config_class = ABConfig
    source = (
        "Heo et al., AAAI 2019; defaults: RepDistiller scripts/run_cifar_distill.sh (abound), "
        "distiller_zoo/AB.py, init stage of train_student.py"
    )

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        cfg = self.config
        return paired_stage_defaults(
            self.student, self.teacher, cfg.student_layers, cfg.teacher_layers, preact=True
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        refuse_multi_process("ab", "the connectors and the student's fc are each idle in one phase")
        shapes = zip(self.student_layer_names, self.teacher_layer_names, strict=True)
        self.connectors = nn.ModuleList(
            ABConnector(self.student_feature_shapes[s], self.teacher_feature_shapes[t]) for s, t in shapes
        )

    def init_epochs(self) -> float:
        """Length of the initialisation phase in epochs (the configured one, else ``epochs / 8``)."""
        cfg = self.config
        return cfg.init_epochs if cfg.init_epochs is not None else self.epochs * INIT_FRACTION

    def in_init_phase(self) -> bool:
        """Whether the current (1-based) epoch belongs to the AB-only initialisation."""
        return self.epoch <= self.init_epochs()

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        init = self.in_init_phase()
        weight = cfg.kd_weight if init else cfg.after_init_weight
        losses = {} if init else self.ce_term(step)
        if weight > 0:
            pairs = [c(s, t) for c, (s, t) in zip(self.connectors, self.feature_pairs(step), strict=True)]
            loss = ab_loss([p[0] for p in pairs], [p[1] for p in pairs], cfg.margin)
            losses["ab"] = weight * loss
        return losses or self.ce_term(step)
