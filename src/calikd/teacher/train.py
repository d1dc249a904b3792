"""Train a teacher: the run's set-up (data, model, precision, optimizer), then the engine's trainer
(:func:`calikd.engine.fit.fit`) with the teacher task (the teacher losses: CE with label smoothing or MSE)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from torch import nn

from calikd.data import (
    BatchLoader,
    DatasetSplits,
    build_eval_transform,
    build_train_transform,
    load_dataset,
)
from calikd.engine.config import build_optimization
from calikd.engine.distributed import Distributed, sync_batch_norm
from calikd.engine.fit import Fitted, TrainTask, fit
from calikd.engine.progress import progress_bar
from calikd.engine.result import RunResult
from calikd.engine.run import CHECKPOINT_FILES, locks_run_dir, run_meta, run_precision, train_loader
from calikd.errors import TrainingDivergedError
from calikd.models import create_model, model_info
from calikd.teacher.config import TeacherConfig
from calikd.teacher.losses import teacher_loss
from calikd.utils.device import Precision
from calikd.utils.io import atomic_write_json
from calikd.utils.seed import derive_seed

# Files a teacher run writes into its output folder (removed first by --overwrite).
RUN_FILES = (*CHECKPOINT_FILES, "summary.json")


@dataclass(kw_only=True)
class TeacherResult(RunResult):
    """What a finished teacher run produced: the run's fields and the test numbers of its two checkpoints."""

    test_last: dict[str, float]
    test_best: dict[str, float]


def train_one_epoch(
    model: nn.Module,
    loader: BatchLoader,
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    generator: torch.Generator,
    device: torch.device,
    precision: Precision,
    label_smoothing: float = 0.0,
    loss_name: str = "ce",
    grad_clip: float | None = None,
    on_step: Callable[[], None] | None = None,
    desc: str = "train",
    show_progress: bool = True,
    runtime: Distributed | None = None,
) -> dict[str, float]:
    """One pass of training with ``loss_name`` (``ce`` or ``mse``, see :mod:`calikd.teacher.losses`);
    returns mean loss, train accuracy and throughput.

    Under data-parallel training (``runtime``) ``model`` is the DDP-wrapped model, ``loader`` yields this
    rank's share of every batch, and the returned numbers are over all ranks' samples.
    """
    runtime = runtime or Distributed()
    model.train()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    start = time.perf_counter()
    with progress_bar(len(loader.dataset), desc, enabled=show_progress and runtime.is_main) as bar:
        for images, labels in loader:
            x = transform(images, generator)
            if precision.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast(device):
                logits = model(x)
            loss = teacher_loss(logits, labels, loss_name, label_smoothing)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"training diverged: the loss is {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss.detach().double() * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += len(labels)
            bar.update(len(labels) * runtime.world_size)
            if bar.n and not bar.disable:
                bar.set_postfix(loss=f"{total_loss.item() / seen:.3f}", refresh=False)
            if on_step is not None:
                on_step()
    elapsed = time.perf_counter() - start
    if runtime.enabled:
        total_loss, correct = runtime.sum(total_loss), runtime.sum(correct)
        seen *= runtime.world_size  # every rank trains the same number of rows
    return {
        "loss": float(total_loss) / max(seen, 1),
        "accuracy": float(correct) / max(seen, 1),
        "images_per_s": seen / max(elapsed, 1e-9),
        "seconds": elapsed,
    }


@dataclass(eq=False)
class TeacherTask(TrainTask):
    """Supervised training of one model with the teacher losses (CE with label smoothing, or MSE)."""

    config: TeacherConfig
    run_files: ClassVar[tuple[str, ...]] = RUN_FILES

    def __post_init__(self) -> None:
        info, config = self.data.info, self.config
        if config.augment:
            self.train_tf = build_train_transform(info, crop_padding=config.crop_padding, hflip=config.hflip)
        else:
            plain = build_eval_transform(info)

            def train_tf(x: torch.Tensor, _gen: torch.Generator) -> torch.Tensor:
                return plain(x)

            self.train_tf = train_tf
        self.eval_tf = build_eval_transform(info)
        self.train_model = self.model

    def wrap(self) -> None:
        self.train_model = self.runtime.wrap(self.model, self.device)

    def train_epoch(
        self, epoch: int, *, generator: torch.Generator, on_step: Callable[[], None], desc: str
    ) -> dict[str, float]:
        stats = train_one_epoch(
            self.train_model,
            self.loader,
            self.train_tf,
            self.optimizer,
            self.scheduler,
            label_smoothing=self.config.label_smoothing,
            loss_name=self.config.loss,
            **self.loop_options(generator, on_step, desc),
        )
        self.runtime.broadcast_buffers(self.model)  # every rank evaluates and saves rank 0's BN statistics
        return stats

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        return self.eval_tf(images)

    def checkpoint_meta(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        config = self.config
        model = {"name": config.model, "kwargs": dict(config.model_kwargs)}
        size = self.data.info.image_size
        return run_meta("teacher", model, self.data, config, input_size=size, epoch=epoch, metrics=metrics)

    def result(self, fitted: Fitted) -> TeacherResult:
        return TeacherResult(
            **fitted.common(),
            test_last=fitted.test_last,
            test_best=fitted.test_best,
            extra={
                "precision": self.choice.describe(),
                **({"world_size": self.runtime.world_size} if self.runtime.enabled else {}),
            },
        )

    def write(self, result: RunResult) -> None:
        atomic_write_json(result.out_dir / "summary.json", result.to_dict())


@locks_run_dir  # the run folder's lock, taken in prepare_run_dir, ends with the run
def train_teacher(
    config: TeacherConfig,
    *,
    data: DatasetSplits | None = None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> TeacherResult:
    """Train a teacher as ``config`` says and return its checkpoints and metrics.

    ``data`` skips loading the dataset (it must be the one ``config`` names); ``on_step(global_step)`` is
    called after every optimizer step; ``log`` receives one line per epoch (``None`` silences it).

    Under ``torchrun`` (an open process group) every rank calls this: the model trains under
    DistributedDataParallel with ``batch_size`` as the global batch, metrics come from all samples, and rank 0
    alone logs and writes files (see :mod:`calikd.engine.distributed`); every rank returns the result.
    """
    runtime = Distributed.current()
    say = (log or (lambda _msg: None)) if runtime.is_main else (lambda _msg: None)
    device = runtime.device(config.device)
    model_info(config.model)  # an unknown model name fails before any data is read
    if data is None:
        data = load_dataset(
            config.dataset,
            config.data_dir,
            val_fraction=config.val_fraction,
            split_seed=config.split_seed,
            download=config.download,
            **config.dataset_options,
        )
    info = data.info
    torch.manual_seed(derive_seed(config.seed, "init"))
    model = create_model(
        config.model, num_classes=info.num_classes, in_channels=info.in_channels, **config.model_kwargs
    )
    out_dir = Path(config.out or config.default_out())
    choice = run_precision(
        config,
        device,
        model,
        input_shape=(info.in_channels, *info.image_size),
        num_classes=info.num_classes,
        train_size=len(data.train),
        model_key={"name": config.model, "kwargs": dict(config.model_kwargs)},
        out_dir=out_dir,
        runtime=runtime,
    )
    say(choice.line())
    model = sync_batch_norm(model, config.sync_bn, runtime, device)
    model.to(device)
    if choice.precision.channels_last:
        model.to(memory_format=torch.channels_last)

    loader = train_loader(data.train, config, device, runtime)
    optimizer, scheduler = build_optimization(model, config, len(loader))
    task = TeacherTask(config, model, data, loader, optimizer, scheduler, choice, device, runtime)
    result = fit(task, out_dir=out_dir, on_step=on_step, say=say)
    return cast(TeacherResult, result)
