"""Class activation transfer (Guo et al., "Class Attention Transfer Based Knowledge Distillation",
CVPR 2023).

A network whose classifier is global average pooling followed by a linear layer ``fc`` has, for each class
``k``, a class activation map ``CAM_k(h, w) = <W_k, A(h, w)> + b_k`` on its last feature map ``A``; its
logits are the CAMs' spatial means. CAT-KD makes the student's CAMs match the teacher's: both are
average-pooled to ``resolution x resolution`` (optionally L2-normalised over space) and compared with the
mean squared error:

    L_CAT = mean_{b, k, i, j} (pool_r(CAM^s)_bkij - pool_r(CAM^t)_bkij)^2

The authors convert each model's ``fc`` into a 1x1 convolution applied before the pooling; here the CAMs
are computed from the unchanged models (a forward pre-hook on the module named ``pool`` reads the last
feature map, and ``fc``'s weights map it), which gives the same maps. A dropout between ``pool`` and ``fc``
(calikd's ``cnn`` with ``dropout > 0``) is not applied to the CAMs.

Defaults (CIFAR-100, the authors' ``configs/cifar100/CAT_KD/res32x4_res8x4.yaml``): CE weight 1, CAT weight
(beta) 15, resolution 2, no normalisation; no KD term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from calikd.distill.base import Distiller, DistillerConfig, DistillStep, clone_out_of_inference, pair_table
from calikd.distill.registry import register_distiller
from calikd.errors import ConfigError
from calikd.utils.config import option


def class_activation_maps(
    feature_map: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``(B, C, H, W)`` and ``fc``'s ``(K, C)`` weight / ``(K,)`` bias -> CAMs ``(B, K, H, W)``."""
    if feature_map.ndim != 4:
        raise ConfigError(
            "CAT-KD needs the feature map fed to the global pooling (B, C, H, W), got "
            f"{tuple(feature_map.shape)}"
        )
    with torch.autocast(feature_map.device.type, enabled=False):  # float32 maps under mixed precision
        cams = torch.einsum("bchw,kc->bkhw", feature_map.float(), weight.float())
    return cams if bias is None else cams + bias.float()[None, :, None, None]


def cat_loss(
    student_cams: torch.Tensor, teacher_cams: torch.Tensor, resolution: int = 2, normalize: bool = False
) -> torch.Tensor:
    """MSE of the CAMs average-pooled to ``resolution x resolution`` (L2-normalised over space if asked)."""
    if student_cams.shape[:2] != teacher_cams.shape[:2]:
        raise ConfigError(
            f"CAT-KD compares CAMs of the same classes, got {tuple(student_cams.shape)} and "
            f"{tuple(teacher_cams.shape)}"
        )
    s = F.adaptive_avg_pool2d(student_cams.float(), resolution)
    t = F.adaptive_avg_pool2d(teacher_cams.float(), resolution)
    if normalize:
        s, t = (F.normalize(x.flatten(2), p=2, dim=2) for x in (s, t))
    return F.mse_loss(s, t)


class _PoolInput:
    """Forward pre-hook keeping the latest input of a module."""

    def __init__(self, module: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any) -> None:
        self.value = args[0]


def _unwrap(model: nn.Module) -> nn.Module:
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and inner is not model:
            return _unwrap(inner)
    return model


def _pool_and_fc(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    inner = _unwrap(model)
    pool, fc = getattr(inner, "pool", None), getattr(inner, "fc", None)
    if not isinstance(pool, nn.Module) or not isinstance(fc, nn.Linear):
        raise ConfigError(
            f"CAT-KD needs a model whose classifier is a module 'pool' then a linear 'fc' "
            f"({type(inner).__name__} has {'no pool' if pool is None else 'no linear fc'})"
        )
    return pool, fc


@dataclass
class CATKDConfig(DistillerConfig):
    """Options of CAT-KD.

    The authors' per-pair weights (``configs/cifar100/CAT_KD/*.yaml``; CE 1, resolution 2 throughout):
    resnet32x4 -> resnet8x4 15; resnet56 -> resnet20 0.7; resnet110 -> resnet32 1.8; wrn_40_2 -> wrn_16_2 12;
    wrn_40_2 -> wrn_40_1 1.5; vgg13 -> vgg8 4.5.
    """

    kd_weight: float = option(15.0, "weight (beta) of the class-activation-transfer term", min=0.0)
    resolution: int = option(2, "size the CAMs are average-pooled to before comparing", min=1)
    normalize: bool = option(False, "L2-normalise each pooled CAM over space first")


@register_distiller("catkd")
class CATKD(Distiller):
    """CAT-KD: match the student's class activation maps to the teacher's (pooled, MSE)."""

    config_class = CATKDConfig
    uses_features = True  # the teacher must run on every batch (its CAMs), not come from the logit cache
    source = (
        "Guo et al., CVPR 2023; defaults: authors' configs/cifar100/CAT_KD/res32x4_res8x4.yaml, CAT_KD.py"
    )
    pair_source = (
        "GzyAftermath/CAT-KD configs/cifar100/CAT_KD/*.yaml @ 4467073"
        " (CAT_loss_weight, CAM_RESOLUTION, IF_NORMALIZE)"
    )
    pair_defaults = pair_table(
        {
            ("resnet110", "resnet32"): {"kd_weight": 1.8, "resolution": 2, "normalize": False},
            ("resnet32x4", "resnet8x4"): {"kd_weight": 15.0, "resolution": 2, "normalize": False},
            ("resnet32x4", "shufflenetv1"): {"kd_weight": 600.0, "resolution": 4, "normalize": True},
            ("resnet32x4", "shufflenetv2"): {"kd_weight": 600.0, "resolution": 4, "normalize": True},
            ("resnet50", "mobilenetv2"): {"kd_weight": 40.0, "resolution": 2, "normalize": True},
            ("resnet56", "resnet20"): {"kd_weight": 0.7, "resolution": 2, "normalize": False},
            ("vgg13", "mobilenetv2"): {"kd_weight": 15.0, "resolution": 2, "normalize": True},
            ("vgg13", "vgg8"): {"kd_weight": 4.5, "resolution": 2, "normalize": False},
            ("wrn_40_2", "shufflenetv1"): {"kd_weight": 80.0, "resolution": 4, "normalize": True},
            ("wrn_40_2", "wrn_16_2"): {"kd_weight": 12.0, "resolution": 2, "normalize": False},
            ("wrn_40_2", "wrn_40_1"): {"kd_weight": 1.5, "resolution": 2, "normalize": False},
        }
    )

    def feature_layers(self) -> tuple[Sequence[str], Sequence[str]]:
        return ["-1"], ["-1"]  # the pooled embeddings (checks the models declare their stages)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s_pool, s_fc = _pool_and_fc(self.student)
        t_pool, t_fc = _pool_and_fc(self.teacher)
        if s_fc.out_features != t_fc.out_features:
            raise ConfigError(
                f"CAT-KD needs the same classes: the student has {s_fc.out_features}, "
                f"the teacher {t_fc.out_features}"
            )
        self._fcs = (s_fc, t_fc)  # a tuple: not registered again as the distiller's own submodules
        self._student_tap, self._teacher_tap = _PoolInput(s_pool), _PoolInput(t_pool)

    def remove_hooks(self) -> None:
        super().remove_hooks()
        self._student_tap.handle.remove()
        self._teacher_tap.handle.remove()

    def compute_losses(self, step: DistillStep) -> dict[str, torch.Tensor]:
        cfg = self.config
        s_fc, t_fc = self._fcs
        t_map = clone_out_of_inference(self._teacher_tap.value)
        with torch.no_grad():
            t_cams = class_activation_maps(t_map, t_fc.weight, t_fc.bias)
        s_cams = class_activation_maps(self._student_tap.value, s_fc.weight, s_fc.bias)
        loss = cat_loss(s_cams, t_cams, cfg.resolution, cfg.normalize)
        return {**self.ce_term(step), "cat": cfg.kd_weight * loss}
