"""One trainer for teachers and students: ``fit(task, config, ...)`` owns the run around the epoch loop —
the run folder, exact resume, per-epoch seeding, validation, best tracking and checkpoints (``last`` and
``best``), the log lines, the final test of both checkpoints, the convergence check and the result. A
:class:`TrainTask` supplies what differs: one epoch of training, how a model is evaluated, the checkpoint
metadata, extra state to resume, and the result it builds."""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from calikd.data import ArrayDataset, BatchLoader, DatasetSplits
from calikd.engine.config import TrainingConfig
from calikd.engine.convergence import Convergence, check_convergence
from calikd.engine.distributed import Distributed
from calikd.engine.evaluate import predict_logits
from calikd.engine.precision import PrecisionChoice
from calikd.engine.result import RunResult
from calikd.engine.run import (
    CHECKPOINT_FILES,
    RESUME_MAY_DIFFER,
    check_ranks_agree,
    check_resumable,
    check_world_size,
    is_better,
    mean_throughput,
    prepare_run_dir,
    save_epoch_checkpoints,
    seed_epoch,
)
from calikd.engine.tracking import Trackers
from calikd.errors import ConfigError
from calikd.metrics import summary_metrics
from calikd.store import load_state_into, read_checkpoint
from calikd.utils.config import config_to_dict


@dataclass(eq=False)
class TrainTask(ABC):
    """What one kind of training supplies to :func:`fit`, built by its set-up (data, model, optimizer).

    ``model`` is the network that is checkpointed and evaluated; ``loader`` yields this rank's batches.
    """

    config: TrainingConfig
    model: nn.Module
    data: DatasetSplits
    loader: BatchLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    choice: PrecisionChoice
    device: torch.device
    runtime: Distributed
    run_files: ClassVar[tuple[str, ...]] = CHECKPOINT_FILES  # what --overwrite removes from the run folder
    may_differ: ClassVar[frozenset[str]] = RESUME_MAY_DIFFER  # config keys a resume may change

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Before the epoch's random streams are seeded: tell the loader (and the like) the epoch."""
        self.loader.set_epoch(epoch)

    def wrap(self) -> None:
        """After any resume: wrap what trains for data-parallel training (nothing by default)."""
        return None

    @abstractmethod
    def train_epoch(
        self, epoch: int, *, generator: torch.Generator, on_step: Callable[[], None], desc: str
    ) -> dict[str, float]:
        """One pass of training; returns ``loss``, ``accuracy``, ``images_per_s``, ``seconds`` (and more)."""

    def loop_options(
        self, generator: torch.Generator, on_step: Callable[[], None], desc: str
    ) -> dict[str, Any]:
        """The keyword arguments that every epoch loop takes (see :meth:`train_epoch`)."""
        return dict(
            generator=generator,
            device=self.device,
            precision=self.choice.precision,
            grad_clip=self.config.grad_clip,
            on_step=on_step,
            desc=desc,
            show_progress=self.config.progress,
            runtime=self.runtime,
        )

    @abstractmethod
    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of stored images as the model sees them in evaluation."""

    def predict(self, model: nn.Module, dataset: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of ``dataset`` (under DDP: every rank's shard, gathered)."""
        return predict_logits(
            model,
            dataset,
            self.eval_transform,
            device=self.device,
            precision=self.choice.precision,
            batch_size=self.config.eval_batch_size,
            runtime=self.runtime,
        )

    @abstractmethod
    def checkpoint_meta(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        """Metadata stored beside the weights of epoch ``epoch`` (see :func:`~calikd.engine.run.run_meta`)."""

    def loss_text(self, stats: Mapping[str, float]) -> str:
        """The losses in the epoch's log line."""
        return f"loss {stats['loss']:.4f}"

    def extra_state(self) -> dict[str, Any]:
        """Training state besides the optimizer and scheduler that a resume needs."""
        return {}

    def check_resume(self, meta: Mapping[str, Any]) -> None:
        """Refuse to resume from a checkpoint with ``meta`` for reasons beyond the config (nothing here)."""
        return None

    def comparable(self, config: dict[str, Any]) -> dict[str, Any]:
        """A config dict (this run's or a stored one) in the form the resume check compares (as it is)."""
        return dict(config)

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved (after the model's weights, before the optimizer's)."""
        return None

    def end_training(self) -> None:
        """After the last epoch, before the final test."""
        return None

    def test_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> Any:
        """The test numbers of one checkpoint."""
        return summary_metrics(logits, labels)

    @abstractmethod
    def result(self, fitted: Fitted) -> RunResult:
        """The run's result."""

    @abstractmethod
    def write(self, result: RunResult) -> None:
        """Write the run's summary files (rank 0 only)."""


@dataclass
class Fitted:
    """What :func:`fit` measured, from which the task builds its result."""

    out_dir: Path
    best_epoch: int
    history: list[dict[str, float]]
    test_last: Any
    test_best: Any
    wall_time_s: float
    train_images_per_s: float
    convergence: Convergence
    precision: str
    device: str
    # the last model's (logits, labels) on val and test, for tasks that post-process them (no second pass)
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def common(self) -> dict[str, Any]:
        """The :class:`RunResult` fields."""
        return dict(
            out_dir=self.out_dir,
            checkpoint=self.out_dir / "last.safetensors",
            best_checkpoint=self.out_dir / "best.safetensors",
            best_epoch=self.best_epoch,
            history=self.history,
            wall_time_s=self.wall_time_s,
            train_images_per_s=self.train_images_per_s,
            precision=self.precision,
            device=self.device,
            convergence=self.convergence.to_dict(),
        )


def fit(
    task: TrainTask,
    *,
    out_dir: Path,
    on_step: Callable[[int], None] | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> RunResult:
    """Train ``task`` for ``task.config.epochs`` epochs into ``out_dir`` (resuming it if the config says so)
    and return its result; ``on_step(global_step)`` follows every optimizer step, ``say`` gets the log lines.

    The caller holds the run folder's lock (:func:`~calikd.engine.run.locks_run_dir`)."""
    config, runtime = task.config, task.runtime
    prepare_run_dir(
        out_dir, resume=config.resume, overwrite=config.overwrite, run_files=task.run_files, runtime=runtime
    )
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_epoch, start_epoch = 0, 1
    if config.resume:
        ckpt = read_checkpoint(out_dir / "last")
        check_resumable(
            task.comparable(config_to_dict(config)),
            task.comparable(ckpt.meta.get("config", {})),
            task.may_differ,
            defaults=config_to_dict(type(config)()),
        )
        task.check_resume(ckpt.meta)
        state = ckpt.load_train_state()
        if state is None:
            raise ConfigError(f"checkpoint '{out_dir / 'last'}' has no training state to resume from")
        check_world_size(state, runtime, out_dir)
        load_state_into(task.model, ckpt.state_dict)
        task.load_extra_state(state)
        task.optimizer.load_state_dict(state["optimizer"])
        task.scheduler.load_state_dict(state["scheduler"])
        history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        say(f"resuming {out_dir} after epoch {state['epoch']}")

    check_ranks_agree(runtime, start_epoch, out_dir)
    trackers = Trackers(config.log if runtime.is_main else [], out_dir, out_dir.name)
    try:
        result = _train(task, out_dir, history, best, best_epoch, start_epoch, on_step, say, trackers)
    except BaseException:
        trackers.close(failed=True)
        raise
    trackers.close()
    return result


def _tracked(record: Mapping[str, Any]) -> dict[str, Any]:
    """An epoch's record as tracker keys: ``train_loss`` -> ``train/loss``, ``val_ece`` -> ``val/ece``."""
    out = {}
    for key, value in record.items():
        if key == "epoch":  # the step itself
            continue
        head, _, rest = key.partition("_")
        out[f"{head}/{rest}" if head in ("train", "val") and rest else key] = value
    return out


def _track_result(trackers: Trackers, run: Mapping[str, Any], out_dir: Path, epoch: int) -> None:
    """A finished run's numbers for the trackers: test metrics (last, best, calibrated), the teacher's
    before and after calibration (a distillation), and the reliability diagrams."""
    final: dict[str, Any] = {}
    for key in ("test_last", "test_best", "student_test_last", "student_test_best"):
        for metric, value in (run.get(key) or {}).items():
            final[f"{key.removeprefix('student_')}/{metric}"] = value
    for metric, value in ((run.get("student_calibrated") or {}).get("test_last") or {}).items():
        final[f"test_last_calibrated/{metric}"] = value
    for view, splits in ((run.get("teacher") or {}).get("metrics") or {}).items():
        for split, kinds in splits.items():
            for kind, metrics in kinds.items():
                prefix = "teacher" if view == "full" else f"teacher_{view}"
                final.update({f"{prefix}/{split}_{kind}/{m}": v for m, v in metrics.items()})
    trackers.log_metrics(final, epoch)
    trackers.log_image("reliability", out_dir / "reliability.png", epoch)


def _train(
    task: TrainTask,
    out_dir: Path,
    history: list[dict[str, float]],
    best: dict[str, float] | None,
    best_epoch: int,
    start_epoch: int,
    on_step: Callable[[int], None] | None,
    say: Callable[[str], None],
    trackers: Trackers,
) -> RunResult:
    """The epochs from ``start_epoch`` on, the final test, the result and its files."""
    config, choice, device, runtime = task.config, task.choice, task.device, task.runtime
    trackers.log_config(config_to_dict(config))
    task.wrap()
    step = (start_epoch - 1) * len(task.loader)

    def step_hook() -> None:
        nonlocal step
        step += 1
        if on_step is not None:
            on_step(step)

    data, model = task.data, task.model
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    wall_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs + 1):
        task.begin_epoch(epoch, config.epochs)
        generator = seed_epoch(config.seed, epoch, device, runtime)
        stats = task.train_epoch(
            epoch, generator=generator, on_step=step_hook, desc=f"epoch {epoch}/{config.epochs}"
        )
        record: dict[str, float] = {"epoch": epoch, "lr": task.optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v for k, v in stats.items()})
        if len(data.val):
            outputs["val"] = task.predict(model, data.val)
            val = summary_metrics(*outputs["val"])
            record.update({f"val_{k}": v for k, v in val.items()})
        else:
            val = {"accuracy": stats["accuracy"], "nll": stats["loss"], "ece": float("nan")}
        history.append(record)
        meta = task.checkpoint_meta(epoch, {f"val_{k}": v for k, v in val.items()})
        meta["precision"] = choice.describe()
        is_best = is_better(val, best)
        if is_best:
            best, best_epoch = val, epoch
        train_state = {
            "optimizer": task.optimizer.state_dict(),
            "scheduler": task.scheduler.state_dict(),
            **task.extra_state(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "best_epoch": best_epoch,
        }
        save_epoch_checkpoints(out_dir, model, meta, train_state, is_best=is_best, runtime=runtime)
        trackers.log_metrics(_tracked(record), epoch)
        say(
            f"epoch {epoch:>3}/{config.epochs}  {task.loss_text(stats)}  val acc {val['accuracy']:.4f} "
            f"nll {val['nll']:.4f} ece {val['ece']:.4f}  {stats['images_per_s']:.0f} img/s"
        )
    wall = time.perf_counter() - wall_start
    task.end_training()

    outputs["test"] = task.predict(model, data.test)
    test_last = task.test_metrics(*outputs["test"])
    if best_epoch == config.epochs:  # the best checkpoint holds these very weights: the same logits
        test_best = test_last
    else:
        best_model = copy.deepcopy(model)
        load_state_into(best_model, read_checkpoint(out_dir / "best").state_dict)
        test_best = task.test_metrics(*task.predict(best_model, data.test))
    convergence = check_convergence(history, peak_lr=config.lr, chance=1 / data.info.num_classes)
    say(f"convergence: {convergence.describe()}")
    fitted = Fitted(
        out_dir=out_dir,
        best_epoch=best_epoch,
        history=history,
        test_last=test_last,
        test_best=test_best,
        wall_time_s=wall,
        train_images_per_s=mean_throughput(history, start_epoch),
        convergence=convergence,
        precision=choice.precision.name,
        device=str(device),
        outputs=outputs,
    )
    result = task.result(fitted)
    if runtime.is_main:
        task.write(result)
        _track_result(trackers, result.to_dict(), out_dir, config.epochs)
    return result
