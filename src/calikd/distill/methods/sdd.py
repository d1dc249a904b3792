"""Scale decoupled distillation (SDD; Wei, Luo & Luo, CVPR 2024): KD on multi-scale local logits.

The final feature map before global pooling is average-pooled to ``s x s`` cells for each scale ``s``
(default 1, 2, 4: 1 + 4 + 16 = 21 regions) and each cell goes through the model's own classifier ``fc``,
giving one logit vector per region (the 1 x 1 region is the global logit)::

    L_r      = T^2 * KL(softmax(z_t,r / T) || softmax(z_s,r / T))   per sample and region r
    w_r      = 2 if r is local and the teacher's local and global predictions disagree on being right
               (complementary knowledge), else 1 (consistent knowledge; the global region always 1)
    SDD      = sum over samples and regions of w_r * L_r / (B * regions)

"Right" means the teacher's top class equals the label (the most weighted class of a mixed target).
Scales ``[1]`` give plain KD. The student's ``fc`` learns from every region; the teacher's local logits go
through the teacher's calibrator like its global ones. The feature map is the input of the model's ``pool``
(its last feature stage) and the classifier its ``fc``, so SDD needs a model with a spatial map (not
``mlp``); it runs the teacher every step (no logit cache). The authors pool the 4 x 4 map first and the
2 x 2 and 1 x 1 maps from it; here each scale pools the map directly (equal when its side is a multiple
of 4, as on CIFAR's 8 x 8 maps).

Defaults: ``shicaiwei123/SDD-CVPR2024`` SD-KD (``mdistiller/distillers/KD.py``, ``sdd_kd_loss``, weight 2
for the complementary terms; ``mdistiller/engine/cfg.py``: KD temperature 4, CE weight 0.1, KD weight 0.9;
``mdistiller/models/cifar/utils.py``: ``SPP`` with ``--M [1,2,4]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import DistillerConfig, DistillStep, FeatureDistiller
from calikd.distill.functional import hard_labels
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.models import FeatureHooks
from calikd.utils.config import option


class InputHooks(FeatureHooks):
    """:class:`FeatureHooks` that capture each named module's first *input* instead of its output."""

    def _make_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            x = args[0]
            self.features[name] = x.detach() if self.detach else x

        return hook


def multi_scale_logits(
    feature_map: torch.Tensor, fc: nn.Module, scales: Sequence[int] = (1, 2, 4)
) -> torch.Tensor:
    """``(B, regions, K)`` logits of ``fc`` on the map ``(B, C, H, W)`` average-pooled to each ``s x s``.

    Regions are ordered by scale, then row-major within a scale; the first (scale 1) is the global one."""
    if feature_map.ndim != 4:
        raise ConfigError(
            f"SDD needs a spatial feature map (B, C, H, W) before the global pooling, got shape "
            f"{tuple(feature_map.shape)}",
            hint="use a convolutional student and teacher (SDD does not apply to mlp)",
        )
    cells = [F.adaptive_avg_pool2d(feature_map, s).flatten(2) for s in scales]  # (B, C, s*s) each
    return fc(torch.cat(cells, dim=2).transpose(1, 2))


def sdd_loss(
    student_regions: torch.Tensor,
    teacher_regions: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 4.0,
    complementary_weight: float = 2.0,
) -> torch.Tensor:
    """The weighted mean of per-region KD losses (see the module docstring); regions ``(B, R, K)``."""
    if temperature <= 0:
        raise ConfigError(f"the distillation temperature must be positive, got {temperature}")
    z_s, z_t = student_regions.float(), teacher_regions.float()
    if z_s.shape != z_t.shape or z_s.ndim != 3:
        raise ConfigError(
            f"student regions {tuple(z_s.shape)} and teacher regions {tuple(z_t.shape)} must be equal "
            "(B, R, K) shapes"
        )
    labels = hard_labels(target).long().view(-1, 1)
    log_p_s, log_p_t = F.log_softmax(z_s / temperature, dim=2), F.log_softmax(z_t / temperature, dim=2)
    per_region = temperature**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(2)  # (B, R)
    right = z_t.argmax(2) == labels  # (B, R): the teacher's prediction in each region is the label
    weights = torch.where(right == right[:, :1], 1.0, complementary_weight)
    return (weights * per_region).mean()


@dataclass
class SDDConfig(DistillerConfig):
    """Options of SDD (SD-KD). The authors' per-pair scales (``teacher_*.sh``): ``[1, 2]`` for
    ResNet32x4 -> ResNet8x4 and VGG13 -> VGG8, ``[1, 2, 4]`` for the cross-architecture pairs (e.g.
    ResNet32x4 -> ShuffleNetV1/V2, WRN-40-2 -> ShuffleNetV1, ResNet50 -> MobileNetV2)."""

    ce_weight: float = option(0.1, "weight of the cross-entropy with the labels", min=0.0)
    kd_weight: float = option(0.9, "weight of the multi-scale KD term", min=0.0)
    tau: float = option(4.0, "distillation temperature T", min=0.0, exclusive_min=True)
    scales: list[int] = option([1, 2, 4], "pooling grids s (s x s regions each; 1 = the global logit)", min=1)
    complementary_weight: float = option(
        2.0,
        "weight of regions whose teacher prediction is right where the global one is wrong or vice versa",
        min=0.0,
    )


def _classifier(model: nn.Module, pool_name: str) -> nn.Linear:
    """The linear classifier next to the model's ``pool`` (``...pool`` -> ``...fc``)."""
    prefix = pool_name.rpartition(".")[0]
    name = f"{prefix}.fc" if prefix else "fc"
    fc = dict(model.named_modules()).get(name)
    if not isinstance(fc, nn.Linear):
        raise ConfigError(
            f"SDD applies the classifier to pooled regions, but {type(model).__name__} has no linear "
            f"'{name}' after its '{pool_name}'"
        )
    return fc


@register_distiller("sdd")
class SDD(FeatureDistiller):
    """Scale decoupled KD: per-region logits of the final feature map, complementary regions weighted up."""

    config_class = SDDConfig
    feature_hooks = InputHooks
    single_pair = True
    source = "Wei et al., CVPR 2024 (shicaiwei123/SDD-CVPR2024)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if 1 not in self.config.scales:
            raise ConfigError(f"SDD's scales must include 1 (the global region), got {self.config.scales}")
        (s_name,), (t_name,) = self.student_layer_names, self.teacher_layer_names
        for model, name, shapes in (
            (self.student, s_name, self.student_feature_shapes),
            (self.teacher, t_name, self.teacher_feature_shapes),
        ):
            if len(shapes[name]) != 3:
                raise ConfigError(
                    f"SDD needs a spatial feature map before {type(model).__name__}'s '{name}', got shape "
                    f"{tuple(shapes[name])}",
                    hint="use convolutional models (SDD does not apply to mlp)",
                )
        # a tuple, so the classifiers are not registered twice (they belong to the student and the teacher)
        self._classifiers = (_classifier(self.student, s_name), _classifier(self.teacher, t_name))
        self._scales = sorted(set(self.config.scales))

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        (s_name,), (t_name,) = self.student_layer_names, self.teacher_layer_names
        s_fc, t_fc = self._classifiers
        student = multi_scale_logits(step.student_features[s_name], s_fc, self._scales)
        with torch.no_grad():
            teacher = multi_scale_logits(step.teacher_features[t_name], t_fc, self._scales)
            teacher = self.calibrate(teacher.flatten(0, 1)).view(teacher.shape)
        loss = sdd_loss(student, teacher, step.target, cfg.tau, cfg.complementary_weight)
        return {**self.ce_term(step), "kd": cfg.kd_weight * loss}
