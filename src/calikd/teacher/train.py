"""Train a teacher: per-epoch validation, atomic checkpoints, exact resume, test metrics at the end."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import calikd
from calikd.data import (
    ArrayDataset,
    BatchLoader,
    DatasetSplits,
    build_eval_transform,
    build_train_transform,
    load_dataset,
)
from calikd.engine.config import build_optimization
from calikd.engine.convergence import check_convergence
from calikd.engine.distributed import Distributed, sync_batch_norm
from calikd.engine.evaluate import predict_logits
from calikd.engine.precision import select_precision
from calikd.engine.progress import progress_bar
from calikd.engine.run import (
    CHECKPOINT_FILES,
    check_ranks_agree,
    check_resumable,
    check_world_size,
    is_better,
    locks_run_dir,
    mean_throughput,
    prepare_run_dir,
    recorded_precision,
    save_epoch_checkpoints,
    seed_epoch,
)
from calikd.errors import ConfigError, TrainingDivergedError
from calikd.metrics import summary_metrics
from calikd.models import create_model, model_info
from calikd.store import load_state_into, read_checkpoint
from calikd.teacher.config import TeacherConfig
from calikd.teacher.losses import teacher_loss
from calikd.utils.config import config_to_dict
from calikd.utils.device import Precision
from calikd.utils.io import atomic_write_json
from calikd.utils.seed import derive_seed

# Files a teacher run writes into its output folder (removed first by --overwrite).
RUN_FILES = (*CHECKPOINT_FILES, "summary.json")


@dataclass
class TeacherResult:
    """What a finished teacher run produced."""

    out_dir: Path
    checkpoint: Path
    best_checkpoint: Path
    best_epoch: int
    history: list[dict[str, float]]
    test_last: dict[str, float]
    test_best: dict[str, float]
    wall_time_s: float
    train_images_per_s: float
    precision: str
    device: str
    convergence: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out = dataclasses.asdict(self)
        for key in ("out_dir", "checkpoint", "best_checkpoint"):
            out[key] = str(out[key])
        return out


def checkpoint_meta(
    config: TeacherConfig, data: DatasetSplits, epoch: int, metrics: dict[str, float]
) -> dict:
    """Metadata stored beside the weights: enough to rebuild the model and its input pipeline."""
    info = data.info
    return {
        "role": "teacher",
        "model": {"name": config.model, "kwargs": dict(config.model_kwargs)},
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": list(info.image_size),
        "dataset": {
            **info.to_dict(),
            "val_fraction": data.val_fraction,
            "split_seed": data.split_seed,
            "options": dict(data.options),
        },
        "normalization": {"mean": list(info.mean), "std": list(info.std)},
        "epoch": epoch,
        "metrics": metrics,
        "config": config_to_dict(config),
        "calikd_version": calikd.__version__,
    }


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
    choice = select_precision(
        config.precision,
        device,
        model,
        input_shape=(info.in_channels, *info.image_size),
        num_classes=info.num_classes,
        batch_size=config.batch_size // runtime.world_size,
        total_steps=config.epochs * (len(data.train) // config.batch_size),
        model_key={"name": config.model, "kwargs": dict(config.model_kwargs)},
        resumed=recorded_precision(out_dir) if config.resume else None,
        runtime=runtime,
    )
    precision = choice.precision
    say(choice.line())
    model = sync_batch_norm(model, config.sync_bn, runtime, device)
    model.to(device)
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)

    loader = BatchLoader(
        data.train,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
        device=device,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    prepare_run_dir(
        out_dir, resume=config.resume, overwrite=config.overwrite, run_files=RUN_FILES, runtime=runtime
    )
    if len(loader) == 0:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(data.train)} training samples")
    optimizer, scheduler = build_optimization(model, config, len(loader))
    if config.augment:
        train_tf = build_train_transform(info, crop_padding=config.crop_padding, hflip=config.hflip)
    else:
        plain = build_eval_transform(info)

        def train_tf(x: torch.Tensor, _gen: torch.Generator) -> torch.Tensor:
            return plain(x)

    eval_tf = build_eval_transform(info)

    def evaluate(net: nn.Module, dataset: ArrayDataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of ``dataset`` (under DDP: every rank's shard, gathered)."""
        return predict_logits(
            net,
            dataset,
            eval_tf,
            device=device,
            precision=precision,
            batch_size=config.eval_batch_size,
            runtime=runtime,
        )

    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_epoch = 0
    start_epoch = 1
    if config.resume:
        ckpt = read_checkpoint(out_dir / "last")
        check_resumable(
            config_to_dict(config), ckpt.meta.get("config", {}), defaults=config_to_dict(TeacherConfig())
        )
        state = ckpt.load_train_state()
        if state is None:
            raise ConfigError(f"checkpoint '{out_dir / 'last'}' has no training state to resume from")
        check_world_size(state, runtime, out_dir)
        load_state_into(model, ckpt.state_dict)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        say(f"resuming {out_dir} after epoch {state['epoch']}")

    check_ranks_agree(runtime, start_epoch, out_dir)
    train_model = runtime.wrap(model, device)
    step = (start_epoch - 1) * len(loader)
    wall_start = time.perf_counter()

    def step_hook() -> None:
        nonlocal step
        step += 1
        if on_step is not None:
            on_step(step)

    for epoch in range(start_epoch, config.epochs + 1):
        loader.set_epoch(epoch)
        generator = seed_epoch(config.seed, epoch, device, runtime)
        train_stats = train_one_epoch(
            train_model,
            loader,
            train_tf,
            optimizer,
            scheduler,
            generator=generator,
            device=device,
            precision=precision,
            label_smoothing=config.label_smoothing,
            loss_name=config.loss,
            grad_clip=config.grad_clip,
            on_step=step_hook,
            desc=f"epoch {epoch}/{config.epochs}",
            show_progress=config.progress,
            runtime=runtime,
        )
        runtime.broadcast_buffers(model)  # every rank evaluates and saves rank 0's batch-norm statistics
        record: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v for k, v in train_stats.items()})
        if len(data.val):
            val = summary_metrics(*evaluate(model, data.val))
            record.update({f"val_{k}": v for k, v in val.items()})
        else:
            val = {"accuracy": train_stats["accuracy"], "nll": train_stats["loss"], "ece": float("nan")}
        history.append(record)
        meta = checkpoint_meta(config, data, epoch, {f"val_{k}": v for k, v in val.items()})
        meta["precision"] = choice.describe()
        is_best = is_better(val, best)
        if is_best:
            best, best_epoch = val, epoch
        train_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "best_epoch": best_epoch,
        }
        save_epoch_checkpoints(out_dir, model, meta, train_state, is_best=is_best, runtime=runtime)
        say(
            f"epoch {epoch:>3}/{config.epochs}  loss {train_stats['loss']:.4f}  "
            f"val acc {val['accuracy']:.4f} nll {val['nll']:.4f} ece {val['ece']:.4f}  "
            f"{train_stats['images_per_s']:.0f} img/s"
        )

    wall = time.perf_counter() - wall_start
    test_last = summary_metrics(*evaluate(model, data.test))
    best_model = copy.deepcopy(model)
    load_state_into(best_model, read_checkpoint(out_dir / "best").state_dict)
    test_best = summary_metrics(*evaluate(best_model, data.test))
    throughput = mean_throughput(history, start_epoch)
    convergence = check_convergence(history, peak_lr=config.lr)
    say(f"convergence: {convergence.describe()}")
    result = TeacherResult(
        out_dir=out_dir,
        checkpoint=out_dir / "last.safetensors",
        best_checkpoint=out_dir / "best.safetensors",
        best_epoch=best_epoch,
        history=history,
        test_last=test_last,
        test_best=test_best,
        wall_time_s=wall,
        train_images_per_s=throughput,
        precision=precision.name,
        device=str(device),
        convergence=convergence.to_dict(),
        extra={
            "precision": choice.describe(),
            **({"world_size": runtime.world_size} if runtime.enabled else {}),
        },
    )
    if runtime.is_main:
        atomic_write_json(out_dir / "summary.json", result.to_dict())
    return result
