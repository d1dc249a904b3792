"""Overhaul of feature distillation (Heo et al., "A Comprehensive Overhaul of Feature Distillation",
ICCV 2019).

The student matches the teacher's *pre-ReLU* features through a connector ``r`` (1x1 conv, no bias, + BN;
linear + BN for vectors). The teacher's negative responses are replaced by a per-channel *margin* ``m_c``
(margin ReLU: the expected value of the channel's negative responses), and the *partial* L2 distance skips
positions where the teacher is negative and the student already lower:

    l(s, t) = 1/B sum [ (s - m)^2 1{s > m, t <= m} + (s - t)^2 1{s > t, m < t <= 0} + (s - t)^2 1{t > 0} ]

with ``s = r(F_s)``. Stages are weighted ``1 / 2^(n - i - 1)`` (the deepest 1). For a channel whose
pre-ReLU response is ``N(mu, sigma^2)``, ``m = E[x | x < 0] = mu - sigma phi(mu/sigma) / Phi(-mu/sigma)``
(``-3 sigma`` when ``Phi(-mu/sigma) <= 0.001``). As the authors, ``mu`` and ``sigma`` are the bias and
``|weight|`` of the teacher's batch norm when the tapped module is one (calikd's ``cnn``, ``wrn``, ``vgg``,
``mlp``); otherwise (a residual sum, as ResNet's ``preact``) they are the channel's mean and standard
deviation over the first training batch. Margins are buffers, saved for exact resume. A map larger than
its partner is average-pooled to the partner's size (mdistiller pools the teacher's map to the student's).

Taps: the pre-ReLU outputs of every intermediate stage (mdistiller's ``preact_feats[1:]``; see
:func:`calikd.models.preact_feature_stages`), deepest stages paired when the counts differ.
Defaults (CIFAR-100, mdistiller ``mdistiller/engine/cfg.py``, ``CFG.OFD``): CE weight 1, feature weight
0.001, connector kernel 1; the same for every pair (``configs/cifar100/ofd.yaml`` sets only the solver).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.methods.at import paired_stage_defaults, pool_to_common_size
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def ofd_margin(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``E[x | x < 0]`` for ``x ~ N(mean, std^2)`` per channel; ``-3 std`` where ``P(x < 0) <= 0.001``."""
    mean, std = mean.double(), std.double().abs().clamp_min(1e-12)
    z = mean / std
    p_neg = torch.special.ndtr(-z)
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    margin = mean - std * pdf / p_neg.clamp_min(1e-300)
    return torch.where(p_neg > 0.001, margin, -3 * std).float()


def ofd_stage_loss(
    student_feat: torch.Tensor, teacher_feat: torch.Tensor, margin: torch.Tensor
) -> torch.Tensor:
    """Partial L2 to the margin-ReLU'd teacher, summed over elements, mean over the batch.

    ``margin`` holds one value per channel (dimension 1)."""
    s, t = student_feat.float(), teacher_feat.float()
    if s.shape != t.shape:
        raise ConfigError(f"OFD compares equal shapes, got {tuple(s.shape)} (student) and {tuple(t.shape)}")
    m = margin.float().view(1, -1, *([1] * (s.ndim - 2)))
    loss = (
        (s - m).pow(2) * ((s > m) & (t <= m)).float()
        + (s - t).pow(2) * ((s > t) & (t > m) & (t <= 0)).float()
        + (s - t).pow(2) * (t > 0).float()
    )
    return loss.sum() / s.shape[0]


def ofd_loss(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    margins: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``sum_i l(s_i, t_i) / 2^(n - i - 1)`` over stages ordered shallow to deep."""
    n = len(student_feats)
    if not n or n != len(teacher_feats) or n != len(margins):
        raise ConfigError(
            f"OFD pairs stages one to one: {n} student maps, {len(teacher_feats)} teacher maps, "
            f"{len(margins)} margins"
        )
    return sum(
        ofd_stage_loss(s, t, m) / 2 ** (n - i - 1)
        for i, (s, t, m) in enumerate(zip(student_feats, teacher_feats, margins, strict=True))
    )


class OFDConnector(nn.Module):
    """1x1 conv (no bias) + BN to the teacher's channels (linear + BN for vectors), He-initialised as in
    the authors' code; ``forward(s, t)`` pools the larger map to the smaller size first."""

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        s_shape, t_shape = tuple(student_shape), tuple(teacher_shape)
        if len(s_shape) == 3 and len(t_shape) == 3:
            layer: nn.Module = nn.Conv2d(s_shape[0], t_shape[0], 1, bias=False)
            norm: nn.Module = nn.BatchNorm2d(t_shape[0])
        elif len(s_shape) == 1 and len(t_shape) == 1:
            layer, norm = nn.Linear(s_shape[0], t_shape[0], bias=False), nn.BatchNorm1d(t_shape[0])
        else:
            raise ConfigError(
                f"OFD pairs a student feature of shape {s_shape} with a teacher feature of shape {t_shape}: "
                "both must be feature maps (C, H, W) or both vectors (D,)"
            )
        nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / t_shape[0]))
        self.net = nn.Sequential(layer, norm)

    def forward(
        self, student_feat: torch.Tensor, teacher_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = pool_to_common_size(student_feat, teacher_feat)
        return self.net(s), t


@dataclass
class OFDConfig(DistillerConfig):
    """Options of OFD. mdistiller uses the same values for every pair."""

    kd_weight: float = option(0.001, "weight of the feature-distillation term", min=0.0)
    student_layers: list[str] = option(
        [], "student stages; empty = the pre-ReLU taps of every intermediate stage"
    )
    teacher_layers: list[str] = option(
        [], "teacher stages; empty = the pre-ReLU taps of every intermediate stage"
    )


@register_distiller("ofd")
class OFD(FeatureDistiller):
    """Overhaul of feature distillation: pre-ReLU features, margin ReLU on the teacher, partial L2."""

    config_class = OFDConfig
    source = (
        "Heo et al., ICCV 2019; defaults: mdistiller mdistiller/engine/cfg.py (CFG.OFD), distillers/OFD.py"
    )

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        cfg = self.config
        return paired_stage_defaults(
            self.student, self.teacher, cfg.student_layers, cfg.teacher_layers, preact=True
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        pairs = list(zip(self.student_layer_names, self.teacher_layer_names, strict=True))
        self.connectors = nn.ModuleList(
            OFDConnector(self.student_feature_shapes[s], self.teacher_feature_shapes[t]) for s, t in pairs
        )
        modules = dict(self.teacher.named_modules())
        ready = True
        for i, (_, t) in enumerate(pairs):
            bn = modules[t]
            channels = self.teacher_feature_shapes[t][0]
            if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.affine:
                margin = ofd_margin(bn.bias.detach(), bn.weight.detach())
            else:
                margin, ready = torch.zeros(channels), False
            self.register_buffer(f"margin{i}", margin.cpu())
        self.register_buffer("margins_ready", torch.tensor(ready))

    def margins(self) -> list[torch.Tensor]:
        """The per-channel margins of the teacher's stages."""
        return [getattr(self, f"margin{i}") for i in range(len(self.connectors))]

    @torch.no_grad()
    def _estimate_margins(self, teacher_feats: Sequence[torch.Tensor]) -> None:
        modules = dict(self.teacher.named_modules())
        for i, (name, t) in enumerate(zip(self.teacher_layer_names, teacher_feats, strict=True)):
            if isinstance(modules[name], nn.modules.batchnorm._BatchNorm):
                continue  # from the batch norm's parameters already
            per_channel = t.float().transpose(0, 1).flatten(1)
            getattr(self, f"margin{i}").copy_(ofd_margin(per_channel.mean(1), per_channel.std(1)))
        self.margins_ready.fill_(True)

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        pairs = [c(s, t) for c, (s, t) in zip(self.connectors, self.feature_pairs(step), strict=True)]
        if not bool(self.margins_ready):
            self._estimate_margins([t for _, t in self.feature_pairs(step)])
        loss = ofd_loss([p[0] for p in pairs], [p[1] for p in pairs], self.margins())
        return {**self.ce_term(step), "ofd": self.config.kd_weight * loss}
