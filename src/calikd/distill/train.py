"""Distil a teacher into a student: the run's set-up (teacher and its calibrator, the method resolved once,
inputs, precision, the teacher-logit cache), then the engine's trainer (:func:`calikd.engine.fit.fit`) with
the distillation task (:mod:`calikd.distill.task`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from calikd.augment import AugmentConfig
from calikd.data import DatasetInfo, DatasetSplits
from calikd.distill.config import DistillConfig
from calikd.distill.inputs import DistillInputs
from calikd.distill.prepare import (
    build_cache,
    check_teacher_fits,
    choose_precision,
    load_data,
    logits_dtype,
    prepare_teacher,
)
from calikd.distill.registry import create_distiller
from calikd.distill.task import DistillResult, DistillTask
from calikd.distill.teacher import DistillTeacher, load_teacher, module_teacher
from calikd.engine.config import build_optimization
from calikd.engine.distributed import Distributed, sync_batch_norm
from calikd.engine.evaluate import predict_logits
from calikd.engine.fit import fit
from calikd.engine.frozen import FrozenRunner
from calikd.engine.run import locks_run_dir, train_loader
from calikd.errors import ConfigError
from calikd.models import create_model, model_info
from calikd.models.external import use_module
from calikd.store import checkpoint_preprocessing, per_channel, read_checkpoint
from calikd.utils.config import config_fields
from calikd.utils.seed import derive_seed

__all__ = ["DistillResult", "distill"]


def _check_module_teacher(config: DistillConfig, teacher: Any, normalization: Any) -> nn.Module | None:
    """The teacher module given to :func:`distill`, checked (None when the teacher is a checkpoint)."""
    if teacher is None:
        return None
    if not isinstance(teacher, nn.Module):
        raise ConfigError(f"teacher= takes a torch nn.Module, got {type(teacher).__name__}")
    if config.teacher:
        raise ConfigError(
            "two teachers: config.teacher (a checkpoint) and teacher= (a module)", hint="give one of them"
        )
    if normalization is None:
        raise ConfigError(
            "teacher= needs teacher_normalization=(mean, std): how the module was trained to be fed",
            hint="per channel in [0, 1] units; (0, 1) for a module fed raw [0, 1] pixels",
        )
    return teacher


def _module_meta(module: nn.Module, info: DatasetInfo, normalization: Any) -> dict[str, Any]:
    """What a checkpoint would record of a teacher module: its input and its dataset."""
    if isinstance(normalization, Mapping):
        mean, std = normalization.get("mean"), normalization.get("std")
    else:
        mean, std = normalization

    return {
        "role": "teacher",
        "model": {"name": type(module).__name__, "kwargs": {}},
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "input_size": list(info.image_size),
        "normalization": {
            "mean": per_channel(mean, info.in_channels),
            "std": per_channel(std, info.in_channels),
        },
        "dataset": {"name": info.name, "classes": list(info.classes)},
    }


@locks_run_dir  # the run folder's lock, taken in prepare_run_dir, ends with the run
def distill(
    config: DistillConfig,
    *,
    data: DatasetSplits | None = None,
    teacher: nn.Module | None = None,
    teacher_normalization: tuple[Sequence[float], Sequence[float]] | Mapping[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> DistillResult:
    """Distil as ``config`` says and return the student's checkpoints, metrics and the teacher's numbers.

    ``data`` skips loading the dataset; ``on_step(global_step)`` is called after every optimizer step;
    ``log`` receives one line per epoch (``None`` silences it).

    ``teacher``: any ``nn.Module`` in memory as the teacher, instead of a checkpoint in ``config.teacher``;
    ``teacher_normalization`` (``(mean, std)`` per channel, in [0, 1] units) says how it was trained to be
    fed and is required with it. Its calibration is ``none`` or ``temperature`` (fitted now on val).

    Under ``torchrun`` (an open process group) every rank calls this: the student (and the method's own
    parts) train under DistributedDataParallel with ``batch_size`` as the global batch; the frozen teacher is
    not wrapped; metrics come from all samples; rank 0 alone logs and writes files (see
    :mod:`calikd.engine.distributed`); every rank returns the result.
    """
    runtime = Distributed.current()
    say = (log or (lambda _msg: None)) if runtime.is_main else (lambda _msg: None)
    module = _check_module_teacher(config, teacher, teacher_normalization)
    method = config.resolve(teacher_given=module is not None)  # the method's options, checked and typed once
    device = runtime.device(config.device)
    model_info(config.student)
    needs_teacher = method.distiller_class.needs_teacher
    if runtime.enabled and method.distiller_class.needs_index:
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

    if config.teacher_module:
        use_module(config.teacher_module)  # the user named it: its checkpoints may now be rebuilt
    teacher_meta = read_checkpoint(config.teacher).meta if config.teacher else None
    if data is None:
        data = load_data(config, teacher_meta)
    info = data.info
    if module is not None:
        teacher_meta = _module_meta(module, info, teacher_normalization)
    normalization = None
    if teacher_meta is not None and needs_teacher:  # the teacher is fed as its checkpoint says, always
        pre = checkpoint_preprocessing(teacher_meta, str(config.teacher or "teacher="))
        normalization = (pre.mean, pre.std)
    if teacher_meta is not None:
        check_teacher_fits(teacher_meta, data, str(config.teacher))
    if config.method_preset == "paper":
        teacher_model = (teacher_meta or {}).get("model", {}).get("name")
        method = method.with_pair_defaults(teacher_model, config.student, say)
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
        teacher_normalization=normalization,
    )
    out_dir = Path(
        config.out or config.default_out(info.name, teacher_meta["model"]["name"] if teacher_meta else None)
    )
    example = data.train.images[:2]
    student_example, teacher_example = inputs.student_eval(example), inputs.teacher_eval(example)
    choice = choose_precision(config, info, student_example, len(data.train), device, runtime, out_dir)
    precision = choice.precision
    say(choice.line())

    def val_logits(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        return predict_logits(
            m,
            data.val,
            inputs.teacher_full_eval,
            device=device,
            precision=precision,
            batch_size=config.eval_batch_size,
            runtime=runtime,
        )

    frozen: DistillTeacher | None = None
    if module is not None and needs_teacher:
        calibration = "none" if config.teacher_calibration == "auto" else config.teacher_calibration
        frozen = module_teacher(module, teacher_meta, calibration, device=device, val_logits=val_logits)
    elif config.teacher and needs_teacher:
        frozen = load_teacher(
            config.teacher, config.teacher_calibration, device=device, val_logits=val_logits
        )
    teacher = frozen
    if teacher is not None:
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
            method = method.with_option("tau", teacher.temperature)
            teacher.applied = False  # Song & Yang: the fitted T is the distillation temperature instead
            calibration = None
            say(f"distilling at the teacher's fitted temperature T = {teacher.temperature:.4f}")
        if calibration is not None and teacher.temperature is not None and method.options.get("standardize"):
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
        method.config,
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

    loader = train_loader(data.train, config, device, runtime, with_indices=True)
    optimizer, scheduler = build_optimization(
        distiller,
        config,
        len(loader),
        dot_delta=config.dot_delta if config.dot else None,
        part_lrs=distiller.part_learning_rates(),
    )
    cache = None
    runner: FrozenRunner | None = None
    if teacher is not None:
        if not distiller.uses_features:
            runner = prepare_teacher(config, teacher, data, inputs, loader, precision, device, runtime)
            distiller.teacher_runner = runner
            say(runner.line())
            for note in runner.notes:
                say(f"note: {note}")
        dtype = logits_dtype(teacher.model, teacher_example.to(device), device, precision)
        cache = build_cache(
            config, distiller, teacher, data, inputs, loader, precision, device, dtype, say, runtime, runner
        )
    task = DistillTask(
        config=config,
        model=student,
        data=data,
        loader=loader,
        optimizer=optimizer,
        scheduler=scheduler,
        choice=choice,
        device=device,
        runtime=runtime,
        method=method,
        distiller=distiller,
        inputs=inputs,
        input_size=input_size,
        teacher=teacher,
        cache=cache,
        runner=runner,
    )
    result = fit(task, out_dir=out_dir, on_step=on_step, say=say)
    return cast(DistillResult, result)
