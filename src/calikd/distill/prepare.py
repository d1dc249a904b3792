"""Set-up of a distillation run: the teacher's data and splits, the precision, the teacher's forward path and
the teacher-logit cache with its key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import calikd
from calikd.data import BatchLoader, DatasetInfo, DatasetSplits, dataset_info, load_dataset
from calikd.distill.base import Distiller
from calikd.distill.cache import TeacherLogitCache
from calikd.distill.config import DistillConfig
from calikd.distill.inputs import DistillInputs
from calikd.distill.teacher import DistillTeacher
from calikd.engine.distributed import Distributed
from calikd.engine.frozen import FrozenRunner, prepare_frozen
from calikd.engine.precision import PrecisionChoice
from calikd.engine.run import run_precision
from calikd.errors import CheckpointError, ConfigError
from calikd.models import create_model
from calikd.store import checkpoint_dataset
from calikd.utils.device import Precision


def load_data(config: DistillConfig, teacher_meta: dict[str, Any] | None) -> DatasetSplits:
    """The dataset with the teacher's own split (its held-out val split is where it was calibrated)."""
    own = checkpoint_dataset(teacher_meta or {}, str(config.teacher))
    name = config.dataset or own.get("name")
    if not name:
        raise ConfigError("no dataset: pass --dataset (or a --teacher whose checkpoint records one)")
    if own and name != own.get("name"):
        return _other_dataset(config, name, own)
    for key, default in (("val_fraction", 0.1), ("split_seed", 0)):
        given, theirs = getattr(config, key), own.get(key, default)
        if own and given is not None and given != theirs:
            raise ConfigError(
                f"{key} {given} differs from the teacher's {theirs}: the student must hold out the split "
                "the teacher was calibrated on",
                hint=f"leave --{key.replace('_', '-')} out",
            )
    options = config.dataset_options if config.dataset_options is not None else own.get("options", {})
    # a training subset of the student's own is fine: subsets are drawn after val is held out, so the
    # teacher's val split (where it was calibrated) stays the student's
    if own and _without_subset(options) != _without_subset(own.get("options", {})):
        raise ConfigError(
            f"dataset options {options} differ from the teacher's {own.get('options', {})}: the student must "
            "use the teacher's data and splits",
            hint="leave --dataset-options out",
        )
    return load_dataset(
        name,
        config.data_dir if config.data_dir is not None else own.get("data_dir"),  # where it was trained
        val_fraction=own.get("val_fraction", 0.1) if config.val_fraction is None else config.val_fraction,
        split_seed=own.get("split_seed", 0) if config.split_seed is None else config.split_seed,
        download=config.download,
        **options,
    )


def _without_subset(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "train_subset"}


def _same_classes(theirs: Any, info: DatasetInfo) -> bool:
    """Whether a teacher's recorded class names are ``info``'s, named (not just ``0..n-1``) and in order."""
    generic = [str(i) for i in range(info.num_classes)]
    return bool(theirs) and list(theirs) == list(info.classes) and list(theirs) != generic


def _other_dataset(config: DistillConfig, name: str, own: dict[str, Any]) -> DatasetSplits:
    """Another dataset than the teacher's: allowed when it has the teacher's classes by name, in order
    (checked before loading where the dataset's info is known without its files); its own splits."""
    options = dict(config.dataset_options or {})

    def refuse(classes: Any) -> ConfigError:
        theirs = list(own.get("classes") or [])[:4]
        return ConfigError(
            f"dataset '{name}' differs from the teacher's '{own.get('name')}', and its classes "
            f"{list(classes)[:4]}... are not shown to be the teacher's {theirs}...",
            hint="distil on the teacher's dataset (leave --dataset out), or on one with the same named "
            "classes",
        )

    try:
        info = dataset_info(name, **options)
    except ConfigError:
        info = None  # its info depends on its files: checked once loaded
    if info is not None and not _same_classes(own.get("classes"), info):
        raise refuse(info.classes)
    data = load_dataset(
        name,
        config.data_dir,
        val_fraction=0.1 if config.val_fraction is None else config.val_fraction,
        split_seed=0 if config.split_seed is None else config.split_seed,
        download=config.download,
        **options,
    )
    if not _same_classes(own.get("classes"), data.info):
        raise refuse(data.info.classes)
    return data


def check_teacher_fits(meta: dict[str, Any], data: DatasetSplits, path: str) -> None:
    """The teacher must know the dataset's classes (by name, where both record them) and channels."""
    info = data.info
    if meta.get("num_classes") != info.num_classes or meta.get("in_channels") != info.in_channels:
        raise CheckpointError(
            f"teacher '{path}' is for {meta.get('num_classes')} classes and {meta.get('in_channels')} "
            f"channels, but dataset '{info.name}' has {info.num_classes} classes and {info.in_channels}"
        )
    theirs = checkpoint_dataset(meta, path).get("classes")
    generic = [str(i) for i in range(info.num_classes)]  # names of unnamed classes: nothing to compare
    named = theirs and info.classes and generic not in (list(theirs), list(info.classes))
    if named and list(theirs) != list(info.classes):
        raise CheckpointError(
            f"teacher '{path}' was trained on the classes {list(theirs)[:5]}..., dataset '{info.name}' has "
            f"{list(info.classes)[:5]}...: the same number, but not the same classes in the same order",
            hint="distil on a dataset with the teacher's classes, in its order",
        )


def logits_dtype(
    teacher: torch.nn.Module, example: torch.Tensor, device: torch.device, precision: Precision
) -> str:
    with torch.inference_mode(), precision.autocast(device):
        return str(teacher(example[:1]).dtype).removeprefix("torch.")


def build_cache(
    config: DistillConfig,
    distiller: Distiller,
    teacher: DistillTeacher,
    data: DatasetSplits,
    inputs: DistillInputs,
    loader: BatchLoader,
    precision: Precision,
    device: torch.device,
    logits_dtype: str,
    say: Callable[[str], None],
    runtime: Distributed,
    runner: FrozenRunner | None = None,
) -> TeacherLogitCache | None:
    mode = config.teacher_cache
    if mode == "off" or distiller.uses_features or distiller.teacher is None:
        return None
    static = not inputs.random_teacher_input
    if mode == "auto":
        if not static:
            return None
        mode = "memory"
    if mode == "memory" and not static:
        say(
            "note: the teacher's input changes every epoch (random augmentation), so an in-memory logit "
            "cache would never be reused; use --teacher-cache disk to share logits across runs"
        )
        return None
    described = inputs.describe()
    eager = runner is None or runner.name == "eager"  # the eager teacher is channels_last with the student
    teacher_layout_cl = precision.channels_last if eager else runner.channels_last
    key: dict[str, Any] = {
        "teacher": teacher.checkpoint_id,
        "teacher_model": teacher.meta.get("model"),
        "dataset": {
            "name": data.info.name,
            "val_fraction": data.val_fraction,
            "split_seed": data.split_seed,
            "options": dict(data.options),
            "train_size": len(data.train),
        },
        "normalization": described["normalization"],
        "teacher_input": described["teacher_input"],
        "low_resolution": described["student_resolution"] if config.teacher_input == "low" else None,
        # what the teacher's logits depend on (not the student's path, so students of other architectures,
        # whose measured precision may differ, share the teacher's logits)
        "teacher_autocast": logits_dtype if precision.autocast_dtype is not None else None,
        "teacher_path": runner.name if runner is not None else "eager",
        "teacher_channels_last": teacher_layout_cl,
        "device_type": device.type,
        "logits_dtype": logits_dtype,
        "versions": {"calikd": calikd.__version__, "torch": torch.__version__},
    }
    if device.type == "cuda":  # GPU kernels may depend on the batch size and the device model
        key.update(device_name=torch.cuda.get_device_name(device), batch_size=config.batch_size)
    if not static:
        augment = inputs.kd_augment.to_dict()
        augment.pop("js_weight", None)  # weights the loss, not the teacher's input
        key.update(
            seed=config.seed,
            batch_size=config.batch_size,
            geometric=described["geometric"],
            kd_augment=augment,
        )
        if runtime.enabled:  # each rank caches its own share, drawn from its own random stream
            key.update(world_size=runtime.world_size, rank=runtime.rank)
    views = 3 if config.kd_augment == "augmix" and config.augmix_js else 1
    kwargs = dict(
        static=static,
        num_samples=len(data.train),
        num_classes=data.info.num_classes,
        rows_per_epoch=len(loader) * loader.local_batch_size * views,
        runtime=runtime,
    )
    if mode == "disk":
        return TeacherLogitCache.open(config.cache_dir, key, **kwargs)
    return TeacherLogitCache(key, **kwargs)


def choose_precision(
    config: DistillConfig,
    info: Any,
    student_example: torch.Tensor,
    train_size: int,
    device: torch.device,
    runtime: Distributed,
    out_dir: Path,
) -> PrecisionChoice:
    """``--precision`` for this run, measured on a throwaway student of the same architecture."""
    with torch.random.fork_rng(devices=[]):
        probe_student = create_model(
            config.student,
            num_classes=info.num_classes,
            in_channels=info.in_channels,
            **config.student_kwargs,
        )
    return run_precision(
        config,
        device,
        probe_student,
        input_shape=tuple(student_example.shape[1:]),
        num_classes=info.num_classes,
        train_size=train_size,
        model_key={"name": config.student, "kwargs": dict(config.student_kwargs)},
        out_dir=out_dir,
        runtime=runtime,
    )


def prepare_teacher(
    config: DistillConfig,
    teacher: DistillTeacher,
    data: DatasetSplits,
    inputs: DistillInputs,
    loader: BatchLoader,
    precision: Precision,
    device: torch.device,
    runtime: Distributed,
) -> FrozenRunner:
    """The teacher's forward path for this run (it runs once per batch, or in epoch 1 only when cached)."""
    cached = config.teacher_cache != "off" and not inputs.random_teacher_input
    views = 3 if config.kd_augment == "augmix" and config.augmix_js else 1
    batches = len(loader) * views * (1 if cached else config.epochs)
    example = inputs.teacher_eval(data.train.images[: loader.local_batch_size])
    return prepare_frozen(
        teacher.model,
        example,
        precision=precision,
        device=device,
        requested=config.teacher_path,
        batches=batches,
        model_key=teacher.meta.get("model", {}),
        runtime=runtime,
    )
