"""Training machinery shared by teacher training and distillation: optimizers, schedules, evaluation."""

from calikd.engine.evaluate import evaluate_checkpoint, predict_logits
from calikd.engine.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler
from calikd.engine.progress import progress_bar

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "build_optimizer",
    "build_scheduler",
    "evaluate_checkpoint",
    "predict_logits",
    "progress_bar",
]
