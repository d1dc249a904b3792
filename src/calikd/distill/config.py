"""Configuration of a distillation run (YAML keys = CLI flags).

Two temperatures are kept apart: the teacher's *calibration* (``teacher_calibration``: a calibrator fitted on
the teacher's held-out val split, applied to its logits before anything else) and the *distillation*
temperature ``tau`` of the KD loss. ``tau_from_calibration`` is Song & Yang's variant: distil at the
teacher's fitted temperature instead (and do not also apply the calibrator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calikd.augment.config import AugmentConfig
from calikd.data.resolution import MODES as RESOLUTION_MODES
from calikd.distill.cache import CACHE_MODES
from calikd.distill.registry import distiller_class, renamed_options
from calikd.distill.resolved import ResolvedMethod
from calikd.engine.config import TrainingConfig
from calikd.errors import ConfigError
from calikd.utils.config import config_fields, option

TEACHER_INPUTS = ("full", "low")
# generic flags -> the method option they set
_METHOD_SHORTCUTS = {
    "tau": "tau",
    "temperature_on": "temperature_on",
    "ce_weight": "ce_weight",
    "kd_weight": "kd_weight",
}


@dataclass
class DistillConfig(TrainingConfig, AugmentConfig):
    """Everything that determines a distillation run; the seed fixes every random draw."""

    teacher: str | None = option(None, "teacher checkpoint (a .safetensors file, its stem, or a run folder)")
    student: str = option("cnn", "student model name (see `calikd models list`)")
    student_kwargs: dict[str, Any] = option({}, "extra student model arguments, e.g. width=32")
    method: str = option("kd", "distillation method (see `calikd methods`)")
    method_options: dict[str, Any] = option({}, "options of the method, e.g. beta=8 (see `calikd methods M`)")
    tau: float | None = option(
        None, "distillation temperature (default: the method's)", min=0.0, exclusive_min=True
    )
    temperature_on: str | None = option(
        None, "soften both outputs (T^2 scaling) or the teacher's only (TTM)", choices=("both", "teacher")
    )
    ce_weight: float | None = option(None, "weight of the cross-entropy (default: the method's)", min=0.0)
    kd_weight: float | None = option(None, "weight of the distillation term (default: the method's)", min=0.0)
    teacher_module: str | None = option(
        None,
        "package.module:factory of a teacher of your own class (imported as a checkpoint by "
        "`calikd import-teacher --module`): importing runs your code, so it is done only when named",
    )
    teacher_calibration: str = option(
        "auto",
        "none | temperature (stored, else fitted on val now) | auto (the stored calibrator if any) | PATH",
    )
    method_preset: str = option(
        "default",
        "default = the method's defaults | paper = the authors' per-pair values for this teacher and student "
        "where they give them (see `calikd methods M`); explicit options still win",
        choices=("default", "paper"),
    )
    tau_from_calibration: bool = option(
        False, "Song & Yang: distil at the teacher's fitted temperature (tau = T) instead of calibrating"
    )
    student_resolution: float | None = option(
        None,
        "student input: side in pixels (e.g. 14) or a factor in (0, 1) (e.g. 0.5)",
        min=0.0,
        exclusive_min=True,
    )
    resolution_mode: str = option(
        "area", "downscaling filter of the student's input", choices=RESOLUTION_MODES
    )
    student_upscale: bool = option(
        False, "scale the low-resolution input back up to full size for the student"
    )
    teacher_input: str = option(
        "full",
        "what the teacher sees: the full-resolution image or the student's low-resolution one",
        choices=TEACHER_INPUTS,
    )
    teacher_cache: str = option(
        "auto",
        "teacher-logit cache: auto = in memory when the teacher's input never changes",
        choices=CACHE_MODES,
    )
    cache_dir: str = option("runs/cache", "where disk caches of teacher logits live")
    teacher_numbers: str | None = option(
        None,
        "JSON file of the teacher's val/test numbers shared by runs (sweeps set it): entries whose key "
        "matches this run are read, the others computed and added",
    )
    reliability_plot: bool = option(
        True,
        "draw the reliability diagrams (reliability.png, about 1 s a run); sweeps draw them for their first "
        "seed only",
    )
    teacher_path: str = option(
        "auto",
        "how the frozen teacher runs in distillation: auto = the fastest of eager, channels_last and "
        "torch.compile measured here (compile only when the run is long enough to repay it)",
        choices=("auto", "eager", "channels_last", "compiled"),
    )
    dataset: str | None = option(None, "dataset (default: the teacher's; required without a teacher)")
    data_dir: str | None = option(None, "folder holding the dataset files (else $CALIKD_DATA, cache, system)")
    dataset_options: dict[str, Any] | None = option(None, "extra dataset options (default: the teacher's)")
    download: bool = option(False, "download the dataset when it is not found locally")
    val_fraction: float | None = option(
        None, "held-out val fraction (default: the teacher's, 0.1 without one)", min=0.0, max=0.9
    )
    split_seed: int | None = option(None, "seed of the train/val split (default: the teacher's)", min=0)
    out: str | None = option(None, "output folder (default: runs/students/<dataset>-<teacher>-<student>-...)")
    dot: bool = option(
        False,
        "DOT (Zhao et al. 2023): SGD with separate momenta for the task (CE) and distillation gradients",
    )
    dot_delta: float = option(
        0.075,
        "DOT: momentum - delta for the task gradient, momentum + delta for the distillation one",
        min=0.0,
    )

    def validate(self) -> None:
        """Cross-field checks, then the method's own options (see :meth:`resolve`)."""
        self.resolve()

    def resolve(self, *, teacher_given: bool = False) -> ResolvedMethod:
        """Check the cross-field rules and resolve the method once: its options (the generic flags merged
        in) checked and typed (unknown or invalid options fail here, before any work). ``teacher_given``:
        the teacher comes as a module (``distill(config, teacher=module)``), not as ``teacher``."""
        TrainingConfig.validate(self)
        AugmentConfig.validate(self)
        cls = distiller_class(self.method)
        if cls.needs_teacher and not (self.teacher or teacher_given):
            raise ConfigError(
                f"method '{self.method}' needs a teacher: pass --teacher CKPT",
                hint="train one with `calikd train-teacher`, or use --method ce for the student alone",
            )
        if self.dot and self.optimizer != "sgd":
            raise ConfigError(
                f"--dot is a variant of SGD; it does not combine with --optimizer {self.optimizer}"
            )
        if self.dot and not (self.momentum - self.dot_delta >= 0 and self.momentum + self.dot_delta < 1):
            raise ConfigError(
                f"--dot needs 0 <= momentum - dot_delta and momentum + dot_delta < 1; got momentum "
                f"{self.momentum}, dot_delta {self.dot_delta}",
                hint="lower --dot-delta (the authors use 0.075 with momentum 0.9)",
            )
        if self.tau_from_calibration and self.tau is not None:
            raise ConfigError("give either --tau or --tau-from-calibration, not both")
        if self.tau_from_calibration and self.teacher_calibration == "none":
            raise ConfigError(
                "--tau-from-calibration needs a fitted temperature: use --teacher-calibration temperature "
                "(or auto / a path to a temperature calibrator)"
            )
        return ResolvedMethod.build(self.method, self.method_options_resolved())

    def method_options_resolved(self) -> dict[str, Any]:
        """``method_options`` with the generic flags (``tau``, weights, ``temperature_on``) merged in (and the
        old spellings of renamed options replaced, with a deprecation warning; checked and typed by
        :meth:`resolve`)."""
        options = {str(k).replace("-", "_"): v for k, v in self.method_options.items()}
        options = renamed_options(options, self.method)
        fields = config_fields(distiller_class(self.method).config_class)
        for flag, key in _METHOD_SHORTCUTS.items():
            value = getattr(self, flag)
            if value is None:
                continue
            if key not in fields:
                raise ConfigError(
                    f"--{flag.replace('_', '-')} does not apply to method '{self.method}', which has no "
                    f"'{key}' option",
                    hint=f"its options: {', '.join(sorted(fields))}",
                )
            if key in options and options[key] != value:
                raise ConfigError(
                    f"--{flag.replace('_', '-')} {value} contradicts method option {key}={options[key]}"
                )
            options[key] = value
        if self.tau_from_calibration and "tau" in options:
            raise ConfigError(
                f"--tau-from-calibration sets the distillation temperature, but method_options also gives "
                f"tau={options['tau']}: drop one of them"
            )
        if self.tau_from_calibration and "tau" not in fields:
            raise ConfigError(
                f"--tau-from-calibration needs a method with a distillation temperature; "
                f"'{self.method}' has none"
            )
        return options

    @staticmethod
    def comparable(saved: dict[str, Any]) -> dict[str, Any]:
        """A stored config (``config_to_dict``) with its method options in today's spelling, so that a run
        started by an older version (method option ``temperature``) compares equal to the same run now."""
        options = saved.get("method_options")
        if not isinstance(options, dict):
            return dict(saved)
        return {**saved, "method_options": renamed_options(options)}

    def default_out(self, dataset: str, teacher_model: str | None) -> str:
        """Output folder used when ``out`` is not given: names the settings that most often vary."""
        parts = [dataset, teacher_model or "none", self.student, self.method]
        if teacher_model is not None and self.method != "ce":
            tags = {"auto": None, "none": "raw", "temperature": "ts"}
            calibration = tags.get(self.teacher_calibration, "cal")
            parts += [p for p in (calibration, "tau-T" if self.tau_from_calibration else None) if p]
        if self.tau is not None:
            parts.append(f"tau{self.tau:g}")
        if self.kd_augment != "none":
            parts.append(self.kd_augment)
        if self.student_resolution is not None:
            parts.append(f"res{self.student_resolution:g}-{self.teacher_input}")
        return f"runs/students/{'-'.join(parts)}-s{self.seed}"
