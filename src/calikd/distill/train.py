"""Distil a teacher into a student: calibrated teacher, KD augmentation, cross-resolution inputs, the
teacher-logit cache, per-epoch validation, atomic checkpoints, exact resume, and a report."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import calikd
from calikd.augment import AugmentConfig, augmix_js_loss
from calikd.data import BatchLoader, DatasetSplits, load_dataset
from calikd.distill.base import Distiller
from calikd.distill.cache import TeacherLogitCache
from calikd.distill.config import DistillConfig
from calikd.distill.inputs import DistillInputs
from calikd.distill.registry import (
    create_distiller,
    distiller_class,
    method_config,
    pair_options,
    renamed_options,
)
from calikd.distill.teacher import DistillTeacher, load_teacher
from calikd.distill.teacher_numbers import teacher_reports
from calikd.engine.config import build_optimization
from calikd.engine.convergence import check_convergence
from calikd.engine.distributed import Distributed, sync_batch_norm
from calikd.engine.evaluate import predict_logits
from calikd.engine.frozen import FrozenRunner, prepare_frozen
from calikd.engine.optim import backward_and_step
from calikd.engine.precision import PrecisionChoice, select_precision
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
from calikd.errors import CheckpointError, ConfigError, TrainingDivergedError
from calikd.metrics import calibration_report, summary_metrics
from calikd.models import create_model, model_info
from calikd.report.run import write_run_report
from calikd.store import load_state_into, read_checkpoint
from calikd.utils.config import config_fields, config_to_dict
from calikd.utils.device import Precision
from calikd.utils.io import json_text
from calikd.utils.seed import derive_seed

RUN_FILES = (*CHECKPOINT_FILES, "report.json", "report.md", "reliability.png")
# also free to change on resume: where the teacher-logit cache lives and whether it is used
RESUME_MAY_DIFFER = frozenset(
    {
        "resume",
        "overwrite",
        "progress",
        "device",
        "out",
        "eval_batch_size",
        "data_dir",
        "download",
        "teacher_cache",
        "cache_dir",
        "teacher_numbers",
        "teacher",
    }
)


@dataclass
class DistillResult:
    """What a finished distillation run produced."""

    out_dir: Path
    checkpoint: Path
    best_checkpoint: Path
    best_epoch: int
    history: list[dict[str, float]]
    student_test_last: dict[str, Any]
    student_test_best: dict[str, Any]
    teacher: dict[str, Any]
    wall_time_s: float
    train_images_per_s: float
    precision: str
    device: str
    convergence: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out = dataclasses.asdict(self)
        for key in ("out_dir", "checkpoint", "best_checkpoint"):
            out[key] = str(out[key])
        return out


def _apply_pair_defaults(
    config: DistillConfig,
    method_options: dict[str, Any],
    teacher_meta: dict[str, Any] | None,
    say: Callable[[str], None],
) -> None:
    """``--method-preset paper``: the authors' values for this pair under the options given explicitly."""
    teacher_model = (teacher_meta or {}).get("model", {}).get("name")
    values = pair_options(config.method, teacher_model, config.student)
    if values is None:
        say(
            f"note: no per-pair values of {config.method} for {teacher_model} -> {config.student}: "
            "the method's defaults apply (`calikd methods` lists the pairs)"
        )
        return
    taken = {k: v for k, v in values.items() if k not in method_options}
    method_options.update(taken)
    method_config(config.method, method_options)  # the merged options must still be valid
    say(f"{config.method}: the authors' values for {teacher_model} -> {config.student}: {taken}")


def _load_data(config: DistillConfig, teacher_meta: dict[str, Any] | None) -> DatasetSplits:
    """The dataset with the teacher's own split (its held-out val split is where it was calibrated)."""
    own = dict((teacher_meta or {}).get("dataset", {}))
    name = config.dataset or own.get("name")
    if not name:
        raise ConfigError("no dataset: pass --dataset (or a --teacher whose checkpoint records one)")
    if own and name != own.get("name"):
        raise ConfigError(
            f"dataset '{name}' differs from the teacher's '{own.get('name')}'",
            hint="distil on the teacher's dataset (leave --dataset out)",
        )
    for key, default in (("val_fraction", 0.1), ("split_seed", 0)):
        given, theirs = getattr(config, key), own.get(key, default)
        if own and given is not None and given != theirs:
            raise ConfigError(
                f"{key} {given} differs from the teacher's {theirs}: the student must hold out the split "
                "the teacher was calibrated on",
                hint=f"leave --{key.replace('_', '-')} out",
            )
    options = config.dataset_options if config.dataset_options is not None else own.get("options", {})
    if own and options != own.get("options", {}):
        raise ConfigError(
            f"dataset options {options} differ from the teacher's {own.get('options', {})}: the student must "
            "use the teacher's data and splits",
            hint="leave --dataset-options out",
        )
    return load_dataset(
        name,
        config.data_dir,
        val_fraction=own.get("val_fraction", 0.1) if config.val_fraction is None else config.val_fraction,
        split_seed=own.get("split_seed", 0) if config.split_seed is None else config.split_seed,
        download=config.download,
        **options,
    )


def _check_teacher_fits(meta: dict[str, Any], data: DatasetSplits, path: str) -> None:
    info = data.info
    if meta.get("num_classes") != info.num_classes or meta.get("in_channels") != info.in_channels:
        raise CheckpointError(
            f"teacher '{path}' is for {meta.get('num_classes')} classes and {meta.get('in_channels')} "
            f"channels, but dataset '{info.name}' has {info.num_classes} classes and {info.in_channels}"
        )


def _student_meta(
    config: DistillConfig,
    data: DatasetSplits,
    inputs: DistillInputs,
    teacher: DistillTeacher | None,
    method_options: dict[str, Any],
    epoch: int,
    metrics: dict[str, float],
    input_size: tuple[int, int],
) -> dict[str, Any]:
    info = data.info
    return {
        "role": "student",
        "model": {"name": config.student, "kwargs": dict(config.student_kwargs)},
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": list(input_size),
        "input_resolution": inputs.resolution.to_dict() if inputs.resolution is not None else None,
        "dataset": {
            **info.to_dict(),
            "val_fraction": data.val_fraction,
            "split_seed": data.split_seed,
            "options": dict(data.options),
        },
        "normalization": {"mean": list(info.mean), "std": list(info.std)},
        "distillation": {
            "method": config.method,
            "method_options": method_options,
            "teacher": teacher.describe() if teacher is not None else None,
            "inputs": inputs.describe(),
        },
        "epoch": epoch,
        "metrics": metrics,
        "config": config_to_dict(config),
        "calikd_version": calikd.__version__,
    }


def _check_same_distillation(
    saved: dict[str, Any], teacher: DistillTeacher | None, method_options: dict[str, Any]
) -> None:
    """Refuse to resume with another teacher, calibrator or effective method options (e.g. a refitted T)."""
    now_teacher = json.loads(json_text(teacher.describe())) if teacher is not None else None
    then_teacher = saved.get("teacher")
    diffs = []
    if (then_teacher or {}).get("checkpoint_id") != (now_teacher or {}).get("checkpoint_id"):
        diffs.append("the teacher's weights")
    then_t, now_t = then_teacher or {}, now_teacher or {}
    if then_t.get("calibrator") != now_t.get("calibrator"):
        diffs.append("the teacher's calibrator")
    elif then_t.get("calibrator_applied") != now_t.get("calibrator_applied"):
        diffs.append("whether the teacher's calibrator is applied")
    then_options = saved.get("method_options")
    if isinstance(then_options, dict):
        then_options = renamed_options(then_options)  # runs of older versions: 'temperature' is now 'tau'
    if json.loads(json_text(then_options)) != json.loads(json_text(method_options)):
        diffs.append(f"the method options ({saved.get('method_options')} then, {method_options} now)")
    if diffs:
        raise ConfigError(
            "cannot resume: " + ", ".join(diffs) + " changed since the run started",
            hint="resume with the same teacher and calibrator, or start a new run in another --out folder",
        )


def _logits_dtype(
    teacher: torch.nn.Module, example: torch.Tensor, device: torch.device, precision: Precision
) -> str:
    with torch.inference_mode(), precision.autocast(device):
        return str(teacher(example[:1]).dtype).removeprefix("torch.")


def _build_cache(
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


def _choose_precision(
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
    local_batch = config.batch_size // runtime.world_size
    return select_precision(
        config.precision,
        device,
        probe_student,
        input_shape=tuple(student_example.shape[1:]),
        num_classes=info.num_classes,
        batch_size=local_batch,
        total_steps=config.epochs * (train_size // config.batch_size),
        model_key={"name": config.student, "kwargs": dict(config.student_kwargs)},
        resumed=recorded_precision(out_dir) if config.resume else None,
        runtime=runtime,
    )


def _prepare_teacher(
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


def distill_one_epoch(
    distiller: Distiller,
    loader: BatchLoader,
    inputs: DistillInputs,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    generator: torch.Generator,
    device: torch.device,
    precision: Precision,
    cache: TeacherLogitCache | None = None,
    js_weight: float = 0.0,
    grad_clip: float | None = None,
    on_step: Callable[[], None] | None = None,
    desc: str = "distil",
    show_progress: bool = True,
    runtime: Distributed | None = None,
    wrapped: torch.nn.Module | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss, train accuracy and throughput.

    Under data-parallel training ``wrapped`` is the DDP-wrapped ``distiller`` (the forward pass goes through
    it), ``loader`` yields this rank's share of every batch, and the returned numbers are over all ranks.
    """
    runtime = runtime or Distributed()
    forward = wrapped if wrapped is not None else distiller
    distiller.train()
    params = distiller.trainable_parameters()
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    start = time.perf_counter()
    with progress_bar(len(loader.dataset), desc, enabled=show_progress and runtime.is_main) as bar:
        for images, labels, index in loader:
            step = inputs.train_step(images, labels, generator)
            xs, xt = step.student, step.teacher
            if precision.channels_last:
                xs = xs.contiguous(memory_format=torch.channels_last)
                xt = xt.contiguous(memory_format=torch.channels_last)
            views_index = index.repeat(step.views) if step.views > 1 else index
            with precision.autocast(device):
                teacher_logits = None
                if cache is not None:
                    if seen == 0:
                        cache.check_first_batch(views_index, xt)
                    teacher_logits = cache.lookup(views_index, len(step.target))
                    if teacher_logits is None:
                        teacher_logits, _ = distiller.run_teacher(xt)
                        cache.store(views_index, teacher_logits)
                    else:
                        teacher_logits = teacher_logits.to(device, non_blocking=True)
                logits, losses = forward(
                    xs, step.target, teacher_x=xt, teacher_logits=teacher_logits, index=views_index
                )
            if step.views == 3 and js_weight > 0:
                losses["js"] = js_weight * augmix_js_loss(*logits.float().chunk(3))
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                raise TrainingDivergedError(f"distillation diverged: the loss is not finite ({parts})")
            backward_and_step(optimizer, losses, params, grad_clip)
            scheduler.step()
            n = len(labels)
            for name, value in losses.items():
                sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64, device=device)) + (
                    value.detach().double() * n
                )
            correct += (logits.detach()[:n].argmax(1) == labels).sum()
            seen += n
            bar.update(n * runtime.world_size)
            if on_step is not None:
                on_step()
    elapsed = time.perf_counter() - start
    if runtime.enabled:
        sums = {name: runtime.sum(value) for name, value in sums.items()}
        correct, seen = runtime.sum(correct), seen * runtime.world_size
    stats = {f"loss_{k}": float(v) / max(seen, 1) for k, v in sums.items()}
    stats["loss"] = sum(stats.values())
    stats.update(
        accuracy=float(correct) / max(seen, 1), images_per_s=seen / max(elapsed, 1e-9), seconds=elapsed
    )
    return stats


def _evaluate_student(
    model: torch.nn.Module,
    dataset: Any,
    inputs: DistillInputs,
    config: DistillConfig,
    device: torch.device,
    precision: Precision,
    runtime: Distributed,
) -> tuple[torch.Tensor, torch.Tensor]:
    return predict_logits(
        model,
        dataset,
        inputs.student_eval,
        device=device,
        precision=precision,
        batch_size=config.eval_batch_size,
        runtime=runtime,
    )


@locks_run_dir  # the run folder's lock, taken in prepare_run_dir, ends with the run
def distill(
    config: DistillConfig,
    *,
    data: DatasetSplits | None = None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> DistillResult:
    """Distil as ``config`` says and return the student's checkpoints, metrics and the teacher's numbers.

    ``data`` skips loading the dataset; ``on_step(global_step)`` is called after every optimizer step;
    ``log`` receives one line per epoch (``None`` silences it).

    Under ``torchrun`` (an open process group) every rank calls this: the student (and the method's own
    parts) train under DistributedDataParallel with ``batch_size`` as the global batch; the frozen teacher is
    not wrapped; metrics come from all samples; rank 0 alone logs and writes files (see
    :mod:`calikd.engine.distributed`); every rank returns the result.
    """
    runtime = Distributed.current()
    say = (log or (lambda _msg: None)) if runtime.is_main else (lambda _msg: None)
    config.validate()
    method_options = config.method_options_resolved()
    device = runtime.device(config.device)
    model_info(config.student)
    needs_teacher = distiller_class(config.method).needs_teacher
    if runtime.enabled and distiller_class(config.method).needs_index:
        raise ConfigError(
            f"method '{config.method}' keeps a memory bank of every training sample, which data-parallel "
            "training does not keep in step across processes yet",
            hint="run it on one process (without torchrun)",
        )
    if runtime.enabled and config.dot:
        raise ConfigError(
            "--dot backpropagates twice per step, which data-parallel training does not support yet",
            hint="run it on one process (without torchrun)",
        )

    teacher_meta = read_checkpoint(config.teacher).meta if config.teacher else None
    if data is None:
        data = _load_data(config, teacher_meta)
    info = data.info
    if teacher_meta is not None:
        _check_teacher_fits(teacher_meta, data, str(config.teacher))
    if config.method_preset == "paper":
        _apply_pair_defaults(config, method_options, teacher_meta, say)
    kd_augment = AugmentConfig(**{name: getattr(config, name) for name in config_fields(AugmentConfig)})
    inputs = DistillInputs(
        info,
        augment=config.augment,
        crop_padding=config.crop_padding,
        hflip=config.hflip,
        kd_augment=kd_augment,
        student_resolution=config.student_resolution,
        resolution_mode=config.resolution_mode,
        student_upscale=config.student_upscale,
        teacher_input=config.teacher_input,
    )
    full_eval = inputs.normalizer
    out_dir = Path(
        config.out or config.default_out(info.name, teacher_meta["model"]["name"] if teacher_meta else None)
    )
    example = data.train.images[:2]
    student_example, teacher_example = inputs.student_eval(example), inputs.teacher_eval(example)
    choice = _choose_precision(config, info, student_example, len(data.train), device, runtime, out_dir)
    precision = choice.precision
    say(choice.line())

    teacher: DistillTeacher | None = None
    if config.teacher and needs_teacher:
        teacher = load_teacher(
            config.teacher,
            config.teacher_calibration,
            device=device,
            val_logits=lambda m: predict_logits(
                m,
                data.val,
                full_eval,
                device=device,
                precision=precision,
                batch_size=config.eval_batch_size,
                runtime=runtime,
            ),
        )
        if precision.channels_last:
            teacher.model.to(memory_format=torch.channels_last)
        for note in teacher.notes:
            say(f"note: {note}")
        calibration = teacher.calibration_fn()
        if config.tau_from_calibration:
            if teacher.temperature is None:
                raise ConfigError(
                    "--tau-from-calibration needs a temperature-scaling calibrator, got "
                    f"{teacher.calibration_source}",
                    hint="use --teacher-calibration temperature",
                )
            method_options["tau"] = teacher.temperature
            teacher.applied = False  # Song & Yang: the fitted T is the distillation temperature instead
            calibration = None
            say(f"distilling at the teacher's fitted temperature T = {teacher.temperature:.4f}")
        if calibration is not None and teacher.temperature is not None and method_options.get("standardize"):
            say(
                "note: logit standardisation is scale-invariant, so temperature scaling of the teacher has "
                "no effect on this method's loss"
            )
    else:
        calibration = None

    torch.manual_seed(derive_seed(config.seed, "init"))
    student = create_model(
        config.student, num_classes=info.num_classes, in_channels=info.in_channels, **config.student_kwargs
    )
    input_size = tuple(student_example.shape[-2:])
    distiller = create_distiller(
        config.method,
        student,
        teacher.model if teacher is not None else None,
        method_options,
        teacher_calibration=calibration,
        student_input=student_example,
        teacher_input=teacher_example,
        num_samples=len(data.train),
        sample_labels=data.train.labels,
    )
    distiller.student = sync_batch_norm(distiller.student, config.sync_bn, runtime, device)
    distiller.to(device)
    if precision.channels_last:
        distiller.to(memory_format=torch.channels_last)

    with torch.no_grad():  # a student too small for its input fails here, not at the first step
        was_training = student.training
        student.eval()
        student(student_example[:2].to(device))
        student.train(was_training)

    loader = BatchLoader(
        data.train,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
        device=device,
        with_indices=True,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    if len(loader) == 0:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(data.train)} training samples")
    optimizer, scheduler = build_optimization(
        distiller, config, len(loader), dot_delta=config.dot_delta if config.dot else None
    )
    cache = None
    runner: FrozenRunner | None = None
    if teacher is not None:
        if not distiller.uses_features:
            runner = _prepare_teacher(config, teacher, data, inputs, loader, precision, device, runtime)
            distiller.teacher_runner = runner
            say(runner.line())
            for note in runner.notes:
                say(f"note: {note}")
        dtype = _logits_dtype(teacher.model, teacher_example.to(device), device, precision)
        cache = _build_cache(
            config, distiller, teacher, data, inputs, loader, precision, device, dtype, say, runtime, runner
        )
    prepare_run_dir(
        out_dir, resume=config.resume, overwrite=config.overwrite, run_files=RUN_FILES, runtime=runtime
    )

    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_epoch, start_epoch = 0, 1
    if config.resume:
        ckpt = read_checkpoint(out_dir / "last")
        check_resumable(
            DistillConfig.comparable(config_to_dict(config)),
            DistillConfig.comparable(ckpt.meta.get("config", {})),
            RESUME_MAY_DIFFER,
            defaults=config_to_dict(DistillConfig()),
        )
        _check_same_distillation(ckpt.meta.get("distillation", {}), teacher, method_options)
        state = ckpt.load_train_state()
        if state is None:
            raise ConfigError(f"checkpoint '{out_dir / 'last'}' has no training state to resume from")
        check_world_size(state, runtime, out_dir)
        load_state_into(student, ckpt.state_dict)
        distiller.load_extra_state(state["distiller"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, best_epoch = state["history"], state["best"], state["best_epoch"]
        start_epoch = state["epoch"] + 1
        say(f"resuming {out_dir} after epoch {state['epoch']}")

    check_ranks_agree(runtime, start_epoch, out_dir)
    wrapped = runtime.wrap(distiller, device, ignore_prefix="teacher.")  # the frozen teacher stays unwrapped
    step = (start_epoch - 1) * len(loader)

    def step_hook() -> None:
        nonlocal step
        step += 1
        if on_step is not None:
            on_step(step)

    def meta_for(epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        meta = _student_meta(config, data, inputs, teacher, method_options, epoch, metrics, input_size)
        return {**meta, "precision": choice.describe()}

    wall_start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs + 1):
        loader.set_epoch(epoch)
        distiller.set_epoch(epoch, config.epochs)
        generator = seed_epoch(config.seed, epoch, device, runtime)
        if cache is not None:
            cache.start_epoch(epoch)
        stats = distill_one_epoch(
            distiller,
            loader,
            inputs,
            optimizer,
            scheduler,
            generator=generator,
            device=device,
            precision=precision,
            cache=cache,
            js_weight=config.js_weight if config.augmix_js else 0.0,
            grad_clip=config.grad_clip,
            on_step=step_hook,
            desc=f"epoch {epoch}/{config.epochs}",
            show_progress=config.progress,
            runtime=runtime,
            wrapped=wrapped,
        )
        runtime.broadcast_buffers(distiller, skip_prefix="teacher.")  # one set of batch-norm statistics
        if cache is not None:
            cache.end_epoch()
        record: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v for k, v in stats.items()})
        if len(data.val):
            val = summary_metrics(
                *_evaluate_student(student, data.val, inputs, config, device, precision, runtime)
            )
            record.update({f"val_{k}": v for k, v in val.items()})
        else:
            val = {"accuracy": stats["accuracy"], "nll": stats["loss"], "ece": float("nan")}
        history.append(record)
        meta = meta_for(epoch, {f"val_{k}": v for k, v in val.items()})
        is_best = is_better(val, best)
        if is_best:
            best, best_epoch = val, epoch
        train_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "distiller": distiller.extra_state(),
            "epoch": epoch,
            "history": history,
            "best": best,
            "best_epoch": best_epoch,
        }
        save_epoch_checkpoints(out_dir, student, meta, train_state, is_best=is_best, runtime=runtime)
        losses = " ".join(f"{k[5:]} {v:.4f}" for k, v in stats.items() if k.startswith("loss_"))
        say(
            f"epoch {epoch:>3}/{config.epochs}  {losses}  val acc {val['accuracy']:.4f} "
            f"nll {val['nll']:.4f} ece {val['ece']:.4f}  {stats['images_per_s']:.0f} img/s"
        )
    wall = time.perf_counter() - wall_start
    distiller.remove_hooks()

    test_last = calibration_report(
        *_evaluate_student(student, data.test, inputs, config, device, precision, runtime)
    )
    best_model = copy.deepcopy(student)
    load_state_into(best_model, read_checkpoint(out_dir / "best").state_dict)
    test_best = calibration_report(
        *_evaluate_student(best_model, data.test, inputs, config, device, precision, runtime)
    )
    panels: dict[str, Any] = {}
    teacher_numbers: dict[str, Any] = {}
    numbers_note: dict[str, str] = {}
    if teacher is not None:
        teacher_numbers = teacher.describe()
        described = inputs.describe()
        views: dict[str, Any] = {"full": (full_eval, {"normalization": described["normalization"]})}
        if config.teacher_input == "low":
            low = {k: described[k] for k in ("normalization", "student_resolution", "teacher_input")}
            views["low"] = (inputs.teacher_eval, {**low, "student_upscale": config.student_upscale})
        reports, reused = teacher_reports(
            teacher,
            data,
            views,
            device=device,
            precision=precision,
            batch_size=config.eval_batch_size,
            runtime=runtime,
            path=config.teacher_numbers,
        )
        if config.teacher_numbers is not None:
            numbers_note = {"teacher_numbers": config.teacher_numbers if reused else "computed"}
        teacher_numbers["metrics"] = {
            view: {
                split: {kind: r.scalars() for kind, r in entry.items()} for split, entry in per_split.items()
            }
            for view, per_split in reports.items()
        }
        for kind, report in reports["full"]["test"].items():
            panels[f"teacher, {'uncalibrated' if kind == 'raw' else 'calibrated'}"] = report
    panels["student (last epoch)"] = test_last
    throughput = mean_throughput(history, start_epoch)
    convergence = check_convergence(history, peak_lr=config.lr)
    say(f"convergence: {convergence.describe()}")
    result = DistillResult(
        out_dir=out_dir,
        checkpoint=out_dir / "last.safetensors",
        best_checkpoint=out_dir / "best.safetensors",
        best_epoch=best_epoch,
        history=history,
        student_test_last=test_last.scalars(),
        student_test_best=test_best.scalars(),
        teacher=teacher_numbers,
        wall_time_s=wall,
        train_images_per_s=throughput,
        precision=precision.name,
        device=str(device),
        convergence=convergence.to_dict(),
        cache=cache.stats() if cache is not None else None,
        extra={
            "dataset": info.name,
            "method": config.method,
            "method_options": method_options,
            "config": config_to_dict(config),
            "precision": choice.describe(),
            **({"teacher_path": runner.describe()} if runner is not None else {}),
            **({"world_size": runtime.world_size} if runtime.enabled else {}),
            **numbers_note,
        },
    )
    if runtime.is_main:
        write_run_report(result.to_dict(), panels, out_dir)
    return result
