"""The parts of a training run that :func:`calikd.engine.fit.fit` and the trainers' set-up use: run folders
(one writer at a time, refuse to clobber, overwrite, resume checks), the training batches and precision of a
run, per-epoch seeding, the checkpoint metadata and the per-epoch checkpoints, one process or many (DDP)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import calikd
from calikd.data import ArrayDataset, BatchLoader, DatasetSplits
from calikd.engine.config import TrainingConfig
from calikd.engine.distributed import Distributed
from calikd.engine.precision import PrecisionChoice, select_precision
from calikd.errors import CalikdError, ConfigError
from calikd.store import read_checkpoint, save_checkpoint
from calikd.utils.config import config_to_dict
from calikd.utils.io import check_writable_dir
from calikd.utils.run_lock import hold_run_dir
from calikd.utils.run_lock import locks_run_dir as locks_run_dir  # the trainers' decorator
from calikd.utils.seed import derive_seed, make_generator

# Config keys that may change between a run and its resumption without changing the result.
RESUME_MAY_DIFFER = frozenset(
    {"resume", "overwrite", "progress", "device", "out", "eval_batch_size", "data_dir", "download", "log"}
)


CHECKPOINT_FILES = tuple(
    f"{stem}{ext}"
    for stem in ("last", "best")
    for ext in (".safetensors", ".json", ".state.safetensors", ".state.json")
)


def prepare_run_dir(
    out_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    run_files: Iterable[str],
    runtime: Distributed | None = None,
) -> None:
    """Lock ``out_dir`` for this run and check that it may be written as asked: an earlier run there needs
    ``resume`` or ``overwrite`` (which deletes the earlier run's ``run_files``; under DDP rank 0 deletes them
    and every rank waits); ``resume`` needs an earlier run.

    The lock (see :mod:`calikd.utils.run_lock`; taken by rank 0 alone under DDP, and every rank fails if it
    cannot be had) lasts until the trainer decorated with :func:`locks_run_dir` ends. A new ``out_dir`` is
    removed again then if nothing was written to it, so a run that fails early leaves nothing behind."""
    runtime = runtime or Distributed()
    check_writable_dir(out_dir)
    refused: CalikdError | None = None
    if runtime.is_main:
        try:
            hold_run_dir(out_dir)
        except CalikdError as exc:
            refused = exc
    agreed = runtime.agree(0 if refused else 1)  # the other ranks learn that rank 0 could not lock it
    if refused is not None:
        raise refused
    if not agreed:
        raise ConfigError(f"rank 0 could not lock the output folder '{out_dir}' (see its message)")
    last_json = out_dir / "last.json"
    if last_json.exists() and not (resume or overwrite):
        raise ConfigError(
            f"output folder '{out_dir}' already holds a checkpoint",
            hint="pass --resume to continue it, --overwrite to start afresh, or choose another --out folder",
        )
    if resume and not last_json.exists():
        raise ConfigError(f"--resume given but '{out_dir}' holds no checkpoint (last.json) to resume from")
    if overwrite and runtime.is_main:
        for stale in run_files:
            (out_dir / stale).unlink(missing_ok=True)
    runtime.barrier()  # no rank reads the folder before rank 0 has cleaned it


def train_loader(
    dataset: ArrayDataset,
    config: TrainingConfig,
    device: torch.device,
    runtime: Distributed,
    *,
    with_indices: bool = False,
) -> BatchLoader:
    """This rank's share of the run's shuffled training batches (a partial last batch dropped); a batch
    larger than ``dataset`` is an error."""
    loader = BatchLoader(
        dataset,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
        device=device,
        with_indices=with_indices,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    if len(loader) == 0:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(dataset)} training samples")
    return loader


def run_precision(
    config: TrainingConfig,
    device: torch.device,
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    train_size: int,
    model_key: Mapping[str, Any],
    out_dir: Path,
    runtime: Distributed,
) -> PrecisionChoice:
    """``config.precision`` for this run of ``model`` (see :func:`~calikd.engine.precision.select_precision`):
    measured for this process's batch and the run's length; a resumed run keeps the path it trained on."""
    return select_precision(
        config.precision,
        device,
        model,
        input_shape=input_shape,
        num_classes=num_classes,
        batch_size=config.batch_size // runtime.world_size,
        total_steps=config.epochs * (train_size // config.batch_size),
        model_key=model_key,
        resumed=recorded_precision(out_dir) if config.resume else None,
        runtime=runtime,
    )


def seed_epoch(seed: int, epoch: int, device: torch.device, runtime: Distributed) -> torch.Generator:
    """Seed torch's global generator for epoch ``epoch`` (dropout and the like) and return the epoch's
    augmentation generator on ``device``; under DDP each rank gets its own streams."""
    torch.manual_seed(derive_seed(seed, "torch", epoch, *runtime.seed_parts()))
    return make_generator(derive_seed(seed, "augment", epoch, *runtime.seed_parts()), device)


def save_epoch_checkpoints(
    out_dir: Path,
    model: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any],
    *,
    is_best: bool,
    runtime: Distributed,
) -> None:
    """Write ``best`` (when ``is_best``) and ``last`` with its ``train_state`` (plus the world size, which a
    resume must match); under DDP rank 0 writes and every rank waits, so none runs ahead of a checkpoint it
    may have to resume from."""
    if runtime.is_main:
        if is_best:
            save_checkpoint(out_dir / "best", model, meta)
        state = {**train_state, "world_size": runtime.world_size}
        save_checkpoint(out_dir / "last", model, meta, train_state=state)
    runtime.barrier()


def run_meta(
    role: str,
    model: Mapping[str, Any],
    data: DatasetSplits,
    config: Any,
    *,
    input_size: tuple[int, ...],
    epoch: int,
    metrics: dict[str, float],
    **extra: Any,
) -> dict[str, Any]:
    """Metadata stored beside a run's weights: enough to rebuild the model (``model`` = name and kwargs)
    and its input pipeline, the epoch and its validation ``metrics``, the run's config, plus ``extra``."""
    info = data.info
    return {
        "role": role,
        "model": dict(model),
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": list(input_size),
        "dataset": {
            **info.to_dict(),
            "val_fraction": data.val_fraction,
            "split_seed": data.split_seed,
            "options": dict(data.options),
            # where its files were: later commands (evaluate, calibrate, distill) find them without --data-dir
            **(
                {"data_dir": str(Path(config.data_dir).resolve())}
                if getattr(config, "data_dir", None)
                else {}
            ),
        },
        "normalization": {"mean": list(info.mean), "std": list(info.std)},
        **extra,
        "epoch": epoch,
        "metrics": metrics,
        "config": config_to_dict(config),
        "calikd_version": calikd.__version__,
    }


def recorded_precision(out_dir: Path) -> str | None:
    """The precision path the run in ``out_dir`` trained on (from its ``last`` checkpoint), if recorded;
    a missing or damaged checkpoint gives None here and its own error where the resume reads it."""
    try:
        chosen = read_checkpoint(out_dir / "last").meta.get("precision", {}).get("chosen")
    except (CalikdError, OSError, AttributeError):
        return None
    return chosen if isinstance(chosen, str) else None


def check_resumable(
    current: Mapping[str, Any],
    saved: Mapping[str, Any],
    may_differ: Iterable[str] = RESUME_MAY_DIFFER,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Refuse to resume when a setting that changes the result differs from the checkpoint's.

    A key the checkpoint lacks (an option added since it was written) counts as its value in ``defaults``.
    """
    skip, defaults = set(may_differ), defaults or {}
    diffs = [
        f"{key}: checkpoint has {saved.get(key, defaults.get(key))!r}, now {value!r}"
        for key, value in current.items()
        if key not in skip and saved.get(key, defaults.get(key)) != value
    ]
    if diffs:
        raise ConfigError(
            "cannot resume: the configuration differs from the checkpoint's (" + "; ".join(diffs) + ")",
            hint="resume with the same settings, or start a new run in another --out folder",
        )


def check_world_size(train_state: Mapping[str, Any], runtime: Distributed, out_dir: Path) -> None:
    """Refuse to resume a run on another number of processes: its batches and random streams would differ."""
    saved = int(train_state.get("world_size", 1))
    if saved != runtime.world_size:
        raise ConfigError(
            f"cannot resume '{out_dir}': it was trained on {saved} process(es), now {runtime.world_size}; "
            "resuming would not reproduce the run",
            hint=f"resume with torchrun --nproc_per_node={saved}" if saved > 1 else "resume without torchrun",
        )


def check_ranks_agree(runtime: Distributed, start_epoch: int, out_dir: Path) -> None:
    """Under DDP: refuse to go on when the ranks would start from different epochs (they read different
    checkpoints, e.g. ``out_dir`` is not on a filesystem every node shares)."""
    if not runtime.agree(start_epoch):
        raise ConfigError(
            f"the processes found different checkpoints in '{out_dir}'",
            hint="put --out on a filesystem that every node shares",
        )


def is_better(metrics: Mapping[str, float], best: Mapping[str, float] | None) -> bool:
    """Whether validation ``metrics`` beat ``best``: higher accuracy, ties broken by lower NLL."""
    if best is None:
        return True
    return (metrics["accuracy"], -metrics["nll"]) > (best["accuracy"], -best["nll"])


def mean_throughput(history: Iterable[Mapping[str, float]], since_epoch: int = 1) -> float:
    """Training images per second over the epochs trained since ``since_epoch`` (time-weighted)."""
    trained = [h for h in history if h["epoch"] >= since_epoch]
    seconds = sum(h["train_seconds"] for h in trained)
    return sum(h["train_images_per_s"] * h["train_seconds"] for h in trained) / max(seconds, 1e-9)
