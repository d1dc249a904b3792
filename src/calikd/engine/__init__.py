"""Training machinery shared by teacher training and distillation: optimizers, schedules, evaluation."""

from calikd.engine.evaluate import CheckpointOutputs, checkpoint_logits, evaluate_checkpoint, predict_logits
from calikd.engine.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler
from calikd.engine.progress import progress_bar

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "CheckpointOutputs",
    "build_optimizer",
    "build_scheduler",
    "checkpoint_logits",
    "evaluate_checkpoint",
    "predict_logits",
    "progress_bar",
]
