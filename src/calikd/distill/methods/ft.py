"""Factor transfer (Kim et al., "Paraphrasing Complex Network: Network Compression via Factor Transfer",
NeurIPS 2018).

A *paraphraser* (a convolutional auto-encoder on the teacher's last feature map) compresses it to
``rate * C_t`` channels, the teacher *factor*; a *translator* (three 3x3 conv-BN-LeakyReLU layers) maps the
student's last feature map to the same shape, the student factor. Each factor ``x (B, C, H, W)`` becomes a
per-sample L2-normalised vector and the loss is the mean absolute difference (``p2 = 1``). Two forms of
the vector:

* ``factor_form="repdistiller"`` (default; what produced the CRD benchmark's numbers): the spatial map of
  the channel mean of ``x^p1`` (``p1 = 2``, RepDistiller's ``FactorTransfer.factor``), an attention map;
* ``factor_form="paper"``: the flattened factor itself (the paper's ``F / ||F||_2``, its Eq. 3 with p = 1).

    L_FT = mean_{b, k} |v(T(F_s))_bk - v(P(F_t))_bk|,    v(x) = normalize(mean_c x^2) or normalize(vec(x))

Training, as RepDistiller's ``--distill factor``, has two phases. First the paraphraser is trained alone to
reconstruct the teacher's feature (MSE, its ``init`` stage); then it is frozen and the student is trained
with the cross-entropy plus ``beta * L_FT`` through the translator. RepDistiller runs the paraphraser's
training as 30 extra epochs (``--init_epochs 30``) before its 240; here it is the first ``init_epochs`` of
the one schedule (default ``epochs / 8``, i.e. 30 of 240), during which the student trains with the
cross-entropy alone (reported as ``ce`` and the reconstruction as ``ft_rec``; no factor term yet).
The paraphraser trains at its own learning rate, ``paraphraser_lr`` (RepDistiller ``helper/pretrain.py``:
0.01 for its ResNet and WRN students, the run's rate, 0.05, for ``vgg8``), scaled by the run's schedule;
at the run's rate (0.1 in calikd's CPU recipes) its reconstruction diverged on a ResNet-20 teacher.

Defaults (CIFAR-100, RepDistiller ``scripts/run_cifar_distill.sh``: ``--distill factor -a 0 -b 200``;
``models/util.py`` ``Paraphraser``/``Translator``: rate 0.5, LeakyReLU slope 0.1, BN in the translator only;
``distiller_zoo/FT.py``: ``p1 = 2``, ``p2 = 1``): CE weight 1, FT weight (beta) 200, the last
feature map before pooling (``feat[-2]``), the same for every pair. A map larger than its partner is
average-pooled to the partner's size first.
Not available under multi-process (DDP) training: parts are idle in one phase or the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller, pair_table
from calikd.distill.methods.ab import INIT_FRACTION, refuse_multi_process
from calikd.distill.methods.at import pool_to_common_size
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option

SLOPE = 0.1  # LeakyReLU slope of the paraphraser and the translator


FACTOR_FORMS = ("repdistiller", "paper")


def factor(x: torch.Tensor, form: str = "repdistiller", p1: float = 2.0) -> torch.Tensor:
    """``(B, C, ...) -> (B, D)``, L2-normalised per sample: the channel mean of ``x^p1`` over the spatial
    positions (``form="repdistiller"``) or the flattened factor (``form="paper"``)."""
    if form not in FACTOR_FORMS:
        raise ConfigError(f"FT's factor form must be one of {FACTOR_FORMS}, got {form!r}")
    x = x.float()
    v = x.pow(p1).mean(1).flatten(1) if form == "repdistiller" else x.flatten(1)
    return F.normalize(v, p=2, dim=1)


def ft_loss(
    student_factor: torch.Tensor, teacher_factor: torch.Tensor, form: str = "repdistiller", p2: int = 1
) -> torch.Tensor:
    """``mean |v(s) - v(t)|^p2`` of the normalised factor vectors (``p2 = 1``: paper and RepDistiller)."""
    s, t = pool_to_common_size(student_factor.float(), teacher_factor.float())
    if s.shape != t.shape:
        raise ConfigError(f"FT factors differ in shape: {tuple(s.shape)} and {tuple(t.shape)}")
    diff = (factor(s, form) - factor(t, form)).abs()
    return diff.mean() if p2 == 1 else diff.pow(p2).mean()


def _conv_block(cin: int, cout: int, *, bn: bool, transpose: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    return [conv(cin, cout, 3, 1, 1), *([nn.BatchNorm2d(cout)] if bn else []), nn.LeakyReLU(SLOPE)]


class Paraphraser(nn.Module):
    """Convolutional auto-encoder of the teacher's feature: ``C -> C -> rate*C -> rate*C`` and back."""

    def __init__(self, channels: int, rate: float = 0.5, bn: bool = False) -> None:
        super().__init__()
        mid = max(1, int(channels * rate))
        self.encoder = nn.Sequential(
            *_conv_block(channels, channels, bn=bn),
            *_conv_block(channels, mid, bn=bn),
            *_conv_block(mid, mid, bn=bn),
        )
        self.decoder = nn.Sequential(
            *_conv_block(mid, mid, bn=bn, transpose=True),
            *_conv_block(mid, channels, bn=bn, transpose=True),
            *_conv_block(channels, channels, bn=bn, transpose=True),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(factor, reconstruction)``."""
        code = self.encoder(x)
        return code, self.decoder(code)


class Translator(nn.Module):
    """The student's feature to a teacher-factor-shaped map: three 3x3 conv-BN-LeakyReLU layers."""

    def __init__(self, in_channels: int, teacher_channels: int, rate: float = 0.5) -> None:
        super().__init__()
        mid = max(1, int(teacher_channels * rate))
        self.net = nn.Sequential(
            *_conv_block(in_channels, in_channels, bn=True),
            *_conv_block(in_channels, mid, bn=True),
            *_conv_block(mid, mid, bn=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class FTConfig(DistillerConfig):
    """Options of FT. RepDistiller uses the same values for every pair."""

    kd_weight: float = option(200.0, "weight (beta) of the factor-transfer term", min=0.0)
    rate: float = option(
        0.5,
        "factor channels as a fraction of the teacher's (paraphrase rate k)",
        min=0.0,
        max=1.0,
        exclusive_min=True,
    )
    factor_form: str = option(
        "repdistiller",
        "factor vector: RepDistiller's channel mean of squares, or the paper's flattened factor",
        choices=FACTOR_FORMS,
    )
    paraphraser_lr: float = option(
        0.01,
        "base learning rate of the paraphraser (RepDistiller: 0.01, the run's rate for vgg8)",
        min=0.0,
        exclusive_min=True,
    )
    init_epochs: float | None = option(
        None,
        "epochs of the paraphraser's reconstruction training (default: epochs / 8, i.e. 30 of 240)",
        min=0.0,
    )
    student_layers: list[str] = option([], "student layer; empty = the last feature map before pooling (-2)")
    teacher_layers: list[str] = option([], "teacher layer; empty = the last feature map before pooling (-2)")


@register_distiller("ft")
class FT(FeatureDistiller):
    """Factor transfer: match the student's translated factor to the teacher's paraphrased factor."""

    config_class = FTConfig
    single_pair = True
    default_layer = "-2"
    source = (
        "Kim et al., NeurIPS 2018; defaults: RepDistiller scripts/run_cifar_distill.sh (-b 200), "
        "distiller_zoo/FT.py, models/util.py, helper/pretrain.py (the paraphraser's lr)"
    )
    pair_source = "HobbitLong/RepDistiller helper/pretrain.py @ b2487ab (lr 0.01 unless the student is vgg8)"
    pair_defaults = pair_table({("vgg13", "vgg8"): {"paraphraser_lr": 0.05}})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        refuse_multi_process("ft", "the translator and the paraphraser are each idle in one phase")
        s_shape = self.student_feature_shapes[self.student_layer_names[0]]
        t_shape = self.teacher_feature_shapes[self.teacher_layer_names[0]]
        if len(s_shape) != 3 or len(t_shape) != 3:
            raise ConfigError(
                f"FT needs feature maps (C, H, W), got {tuple(s_shape)} and {tuple(t_shape)}",
                hint="tap convolutional stages (the default is the last map before pooling, -2)",
            )
        self.paraphraser = Paraphraser(t_shape[0], self.config.rate)
        self.translator = Translator(s_shape[0], t_shape[0], self.config.rate)

    def part_learning_rates(self) -> dict[str, float]:
        return {"paraphraser": self.config.paraphraser_lr}

    def init_epochs(self) -> float:
        """Length of the paraphraser's training in epochs (the configured one, else ``epochs / 8``)."""
        cfg = self.config
        return cfg.init_epochs if cfg.init_epochs is not None else self.epochs * INIT_FRACTION

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        f_s, f_t = self.feature_pairs(step)[0]
        if self.epoch <= self.init_epochs():
            _, rec = self.paraphraser(f_t.float())
            return {**self.ce_term(step), "ft_rec": F.mse_loss(rec.float(), f_t.float())}
        with torch.no_grad():
            teacher_factor = self.paraphraser.encoder(f_t.float())
        loss = ft_loss(self.translator(f_s), teacher_factor, self.config.factor_form)
        return {**self.ce_term(step), "ft": self.config.kd_weight * loss}
