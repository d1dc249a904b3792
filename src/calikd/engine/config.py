"""Options shared by every training run (teacher training and distillation): optimisation, schedule,
input augmentation, precision, device, seed and run-folder handling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from calikd.engine.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler
from calikd.engine.tracking import parse_log_targets
from calikd.errors import ConfigError
from calikd.utils.config import option
from calikd.utils.device import DEVICE_CHOICES, PRECISION_CHOICES, PRECISION_HELP


@dataclass
class TrainingConfig:
    """Optimisation and run options; the seed fixes every random draw."""

    epochs: int = option(30, "number of training epochs", min=1)
    batch_size: int = option(128, "training batch size", min=1)
    eval_batch_size: int = option(1024, "batch size for validation and test", min=1)
    optimizer: str = option("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = option(0.1, "base learning rate", min=0.0, exclusive_min=True)
    momentum: float = option(0.9, "SGD momentum", min=0.0, max=0.999)
    nesterov: bool = option(True, "Nesterov momentum for SGD")
    weight_decay: float = option(5e-4, "weight decay (not applied to biases and norm parameters)", min=0.0)
    schedule: str = option("cosine", "learning-rate schedule", choices=SCHEDULES)
    milestones: list[float] = option(
        [], "epochs at which multistep decays the LR (default: 50% and 75%)", min=0.0
    )
    gamma: float = option(0.1, "multistep decay factor", min=0.0, exclusive_min=True, max=1.0)
    warmup_epochs: float = option(0.0, "linear warm-up length in epochs (fractions allowed)", min=0.0)
    grad_clip: float | None = option(
        None, "clip the gradient norm to this value", min=0.0, exclusive_min=True
    )
    augment: bool = option(True, "random crop (+ flip where the dataset allows) during training")
    crop_padding: int | None = option(None, "random-crop padding in pixels (default: per dataset)", min=0)
    hflip: bool | None = option(None, "horizontal flips (default: per dataset; off for digits)")
    precision: str = option("auto", PRECISION_HELP, choices=PRECISION_CHOICES)
    device: str = option("auto", "auto = CUDA when available, else CPU", choices=DEVICE_CHOICES)
    sync_bn: bool = option(False, "under torchrun on CUDA: synchronise batch-norm statistics across GPUs")
    seed: int = option(0, "seed of initialisation, shuffling and augmentation", min=0)
    resume: bool = option(False, "continue from the last checkpoint in the output folder")
    overwrite: bool = option(False, "start afresh even if the output folder holds an earlier run")
    progress: bool = option(True, "show a progress bar")
    log: list[str] = option(
        [], "experiment trackers, several allowed: tensorboard, mlflow, wandb (offline; calikd[track])"
    )

    def validate(self) -> None:
        """Cross-field checks."""
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})")
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other: choose one")
        if any(m > self.epochs for m in self.milestones):
            raise ConfigError(f"milestones {self.milestones} must lie within the {self.epochs} epochs")
        parse_log_targets(self.log)

    def effective_milestones(self) -> list[float]:
        """Milestones in epochs, defaulting to 50% and 75% of training."""
        return list(self.milestones) or [0.5 * self.epochs, 0.75 * self.epochs]


def build_optimization(
    module: nn.Module,
    config: TrainingConfig,
    steps_per_epoch: int,
    *,
    dot_delta: float | None = None,
    part_lrs: Mapping[str, float] | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer over ``module``'s trainable parameters and its per-iteration LR schedule.

    ``dot_delta``: DOT's two-momentum SGD (see :mod:`calikd.engine.dot`) instead of plain SGD;
    ``part_lrs``: ``{submodule: base learning rate}`` for parts trained at their own rate."""
    optimizer = build_optimizer(
        module,
        config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        dot_delta=dot_delta,
        part_lrs=part_lrs,
    )
    scheduler = build_scheduler(
        optimizer,
        config.schedule,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        warmup_epochs=config.warmup_epochs,
        milestones=config.effective_milestones(),
        gamma=config.gamma,
    )
    return optimizer, scheduler
