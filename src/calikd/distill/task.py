"""Distillation as a task of the engine's trainer (:func:`calikd.engine.fit.fit`): one epoch of the method's
losses, the student's evaluation, its checkpoint metadata and resume checks, and the run's result and
report (the teacher's numbers beside the student's)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from calikd.calibration import CalibrationOnTestWarning, TemperatureScaling, save_calibrator
from calikd.calibration.lookup import calibrator_stem
from calikd.distill.base import Distiller
from calikd.distill.cache import TeacherLogitCache
from calikd.distill.config import DistillConfig
from calikd.distill.epoch import distill_one_epoch
from calikd.distill.inputs import DistillInputs
from calikd.distill.registry import renamed_options
from calikd.distill.resolved import ResolvedMethod
from calikd.distill.teacher import DistillTeacher
from calikd.distill.teacher_numbers import teacher_reports
from calikd.engine.fit import Fitted, TrainTask
from calikd.engine.frozen import FrozenRunner
from calikd.engine.result import RunResult
from calikd.engine.run import CHECKPOINT_FILES, RESUME_MAY_DIFFER, run_meta
from calikd.errors import ConfigError
from calikd.metrics import CalibrationReport, calibration_report
from calikd.report.run import write_run_report
from calikd.store.checkpoint import checkpoint_id
from calikd.utils.config import config_to_dict
from calikd.utils.io import json_text

# the student's own temperature (fitted on val at the end of the run) is stored beside its last checkpoint
STUDENT_CALIBRATOR = ("last.calibrator.json", "last.calibrator.safetensors")
RUN_FILES = (*CHECKPOINT_FILES, *STUDENT_CALIBRATOR, "report.json", "report.md", "reliability.png")
# also free to change on resume: where the teacher-logit cache lives and whether it is used
DISTILL_MAY_DIFFER = RESUME_MAY_DIFFER | {
    "teacher_cache",
    "cache_dir",
    "teacher_numbers",
    "reliability_plot",
    "teacher",
    "teacher_module",
}


@dataclass(kw_only=True)
class DistillResult(RunResult):
    """What a finished distillation run produced: the run's fields, the student's test numbers (last and
    best checkpoint), the teacher's numbers and the teacher-logit cache's statistics."""

    student_test_last: dict[str, Any]
    student_test_best: dict[str, Any]
    teacher: dict[str, Any]
    cache: dict[str, Any] | None = None
    # the last-epoch student temperature-scaled on val: temperature, test metrics, calibrator file
    student_calibrated: dict[str, Any] | None = None


def check_same_distillation(
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


@dataclass(eq=False)
class DistillTask(TrainTask):
    """A student trained by a :class:`Distiller` (its teacher frozen); ``model`` is the student."""

    config: DistillConfig
    method: ResolvedMethod
    distiller: Distiller
    inputs: DistillInputs
    input_size: tuple[int, ...]
    teacher: DistillTeacher | None = None
    cache: TeacherLogitCache | None = None
    runner: FrozenRunner | None = None
    panels: dict[str, CalibrationReport] = field(default_factory=dict)
    run_files: ClassVar[tuple[str, ...]] = RUN_FILES
    may_differ: ClassVar[frozenset[str]] = DISTILL_MAY_DIFFER

    def __post_init__(self) -> None:
        self.wrapped: torch.nn.Module = self.distiller

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        self.loader.set_epoch(epoch)
        self.distiller.set_epoch(epoch, epochs)

    def wrap(self) -> None:
        # the frozen teacher stays unwrapped
        self.wrapped = self.runtime.wrap(self.distiller, self.device, ignore_prefix="teacher.")

    def train_epoch(
        self, epoch: int, *, generator: torch.Generator, on_step: Callable[[], None], desc: str
    ) -> dict[str, float]:
        config, cache = self.config, self.cache
        if cache is not None:
            cache.start_epoch(epoch)
        stats = distill_one_epoch(
            self.distiller,
            self.loader,
            self.inputs,
            self.optimizer,
            self.scheduler,
            cache=cache,
            js_weight=config.js_weight if config.augmix_js else 0.0,
            wrapped=self.wrapped,
            **self.loop_options(generator, on_step, desc),
        )
        self.runtime.broadcast_buffers(self.distiller, skip_prefix="teacher.")  # one set of BN statistics
        if cache is not None:
            cache.end_epoch()
        return stats

    def eval_transform(self, images: torch.Tensor) -> torch.Tensor:
        return self.inputs.student_eval(images)

    def checkpoint_meta(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        config, inputs = self.config, self.inputs
        return run_meta(
            "student",
            {"name": config.student, "kwargs": dict(config.student_kwargs)},
            self.data,
            config,
            input_size=self.input_size,
            epoch=epoch,
            metrics=metrics,
            input_resolution=inputs.resolution.to_dict() if inputs.resolution is not None else None,
            distillation={
                "method": config.method,
                "method_options": dict(self.method.options),
                "teacher": self.teacher.describe() if self.teacher is not None else None,
                "inputs": inputs.describe(),
            },
        )

    def loss_text(self, stats: Mapping[str, float]) -> str:
        return " ".join(f"{k[5:]} {v:.4f}" for k, v in stats.items() if k.startswith("loss_"))

    def extra_state(self) -> dict[str, Any]:
        return {"distiller": self.distiller.extra_state()}

    def check_resume(self, meta: Mapping[str, Any]) -> None:
        check_same_distillation(meta.get("distillation", {}), self.teacher, dict(self.method.options))

    def comparable(self, config: dict[str, Any]) -> dict[str, Any]:
        return DistillConfig.comparable(config)  # runs of older versions spelt the option tau 'temperature'

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.distiller.load_extra_state(state["distiller"])

    def end_training(self) -> None:
        self.distiller.remove_hooks()

    def test_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> CalibrationReport:
        return calibration_report(logits, labels)

    def _teacher_numbers(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The teacher's description with its val/test metrics per input view (and where they came from);
        its test reports become panels of the reliability diagram."""
        config, inputs, teacher = self.config, self.inputs, self.teacher
        if teacher is None:
            return {}, {}
        numbers = teacher.describe()
        described = inputs.describe()
        full = {"normalization": inputs.teacher_normalization_dict()}
        views: dict[str, Any] = {"full": (inputs.teacher_full_eval, full)}
        if config.teacher_input == "low":
            low = {k: described[k] for k in ("normalization", "student_resolution", "teacher_input")}
            views["low"] = (inputs.teacher_eval, {**low, "student_upscale": config.student_upscale})
        reports, reused = teacher_reports(
            teacher,
            self.data,
            views,
            device=self.device,
            precision=self.choice.precision,
            batch_size=config.eval_batch_size,
            runtime=self.runtime,
            path=config.teacher_numbers,
        )
        note = {}
        if config.teacher_numbers is not None:
            note = {"teacher_numbers": config.teacher_numbers if reused else "computed"}
        numbers["metrics"] = {
            view: {
                split: {kind: r.scalars() for kind, r in entry.items()} for split, entry in per_split.items()
            }
            for view, per_split in reports.items()
        }
        for kind, report in reports["full"]["test"].items():
            self.panels[f"teacher, {'uncalibrated' if kind == 'raw' else 'calibrated'}"] = report
        return numbers, note

    def result(self, fitted: Fitted) -> DistillResult:
        config, runtime = self.config, self.runtime
        teacher_numbers, numbers_note = self._teacher_numbers()
        self.panels["student (last epoch)"] = fitted.test_last
        calibrated = self._calibrate_student(fitted)
        return DistillResult(
            **fitted.common(),
            student_test_last=fitted.test_last.scalars(),
            student_test_best=fitted.test_best.scalars(),
            student_calibrated=calibrated,
            teacher=teacher_numbers,
            cache=self.cache.stats() if self.cache is not None else None,
            extra={
                "dataset": self.data.info.name,
                "method": config.method,
                "method_options": dict(self.method.options),
                "config": config_to_dict(config),
                "precision": self.choice.describe(),
                **({"teacher_path": self.runner.describe()} if self.runner is not None else {}),
                **({"world_size": runtime.world_size} if runtime.enabled else {}),
                **numbers_note,
            },
        )

    def _calibrate_student(self, fitted: Fitted) -> dict[str, Any] | None:
        """Temperature scaling of the last-epoch student, fitted on val (never test), stored beside its
        checkpoint (``calikd export`` folds it in), and its test metrics; None without a val split.
        The last epoch's val and test logits are reused where :func:`fit` kept them."""
        if len(self.data.val) == 0:
            return None
        out_dir = fitted.out_dir
        val_logits, val_labels = fitted.outputs.get("val") or self.predict(self.model, self.data.val)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", CalibrationOnTestWarning)
                calibrator = TemperatureScaling().fit(val_logits, val_labels, split="val")
        except ConfigError as exc:  # e.g. a student that is right on every val sample: no finite T
            return {"temperature": None, "note": str(exc).splitlines()[0]}
        calibrator.record["checkpoint_id"] = checkpoint_id(out_dir / "last")
        stem = calibrator_stem(out_dir / "last")
        if self.runtime.is_main:
            save_calibrator(calibrator, stem)
        test_logits, test_labels = fitted.outputs.get("test") or self.predict(self.model, self.data.test)
        report = calibration_report(calibrator.transform(test_logits), test_labels)
        # (no reliability panel of its own: the table row reports it, and a panel costs a plot per run)
        return {
            "temperature": float(calibrator.temperature),
            "test_last": report.scalars(),
            "calibrator": str(stem) + ".json",
        }

    def write(self, result: RunResult) -> None:
        write_run_report(result.to_dict(), self.panels, result.out_dir, plot=self.config.reliability_plot)
