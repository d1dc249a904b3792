"""Knowledge distillation: distillers (one file per method), the training loop and the teacher-logit cache.

Every method is a :class:`Distiller` returning ``(student_logits, {loss_name: loss})`` per batch, and its
loss maths is a pure function (``kd_loss``, ``dkd_loss``, ...) usable in any training loop.
"""

from calikd.distill.base import Distiller, DistillerConfig, DistillStep, resolve_layers
from calikd.distill.config import DistillConfig
from calikd.distill.epoch import distill_one_epoch
from calikd.distill.functional import (
    gradient_reversal,
    hard_labels,
    kl_divergence,
    soft_cross_entropy,
    standardize_logits,
)
from calikd.distill.methods.kd import kd_loss
from calikd.distill.registry import (
    create_distiller,
    distiller_class,
    distiller_info,
    list_distillers,
    method_config,
    register_distiller,
)
from calikd.distill.task import DistillResult
from calikd.distill.train import distill

__all__ = [
    "DistillConfig",
    "DistillResult",
    "DistillStep",
    "Distiller",
    "DistillerConfig",
    "create_distiller",
    "distill",
    "distill_one_epoch",
    "distiller_class",
    "distiller_info",
    "gradient_reversal",
    "hard_labels",
    "kd_loss",
    "kl_divergence",
    "list_distillers",
    "method_config",
    "register_distiller",
    "resolve_layers",
    "soft_cross_entropy",
    "standardize_logits",
]
