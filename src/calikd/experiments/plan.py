"""A sweep's runs: :func:`expand` turns a parsed :class:`~calikd.experiments.spec.SweepSpec` into the
:class:`RunPlan` of every teacher, calibration, student, corrupted set and robustness evaluation, each
with its content-addressed id and the runs it depends on."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calikd.calibration.lookup import checkpoint_stem, find_calibrator
from calikd.distill.config import DistillConfig
from calikd.errors import CalikdError
from calikd.experiments.sharing import distill_settings
from calikd.experiments.spec import SweepSpec, TeacherEntry, path_safe, student_label
from calikd.results import run_id_for
from calikd.utils.config import config_from_dict

PROBES_FILE = "speed-probes.json"  # the sweep's pinned speed measurements (precision, teacher path)


@dataclass(frozen=True)
class RunPlan:
    """One run of a sweep: its kind (``teacher``, ``calibrate``, ``distill``, ``corrupt`` or ``robustness``),
    id, name and config; ``settings`` are the sweep's defaults for how it runs (e.g. the teacher-logit
    cache), not part of its id, and ``config`` wins over them; ``probes`` is the sweep's pinned speed-probe
    file (:func:`calikd.engine.probe_cache.pinned`: the sweep's runs train on the same numeric path)."""

    kind: str
    run_id: str
    name: str
    config: dict[str, Any]
    out_dir: str
    depends_on: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    probes: str | None = None


def _student_data(spec: SweepSpec) -> dict[str, Any]:
    """The dataset options of the sweep's students: the teachers', with their own training subset."""
    if spec.student_train_subset is None:
        return dict(spec.dataset_options)
    return {**spec.dataset_options, "train_subset": spec.student_train_subset}


def _short(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def expand(spec: SweepSpec) -> list[RunPlan]:
    """Every run of the sweep, teachers first, then their calibrations, then the students (no duplicates).

    Each distillation config is validated here, so a bad grid fails before anything runs.
    """
    plans: list[RunPlan] = []
    teacher_ckpt: dict[str, tuple[str, tuple[str, ...]]] = {}
    sweep_calibrator: dict[str, str] = {}  # foreign teacher -> the calibrator this sweep fits for it
    for teacher in spec.teachers:
        cal_out = None
        if teacher.checkpoint is not None:
            teacher_ckpt[teacher.name] = (teacher.checkpoint, ())
            # a checkpoint from outside: its calibrator and report go into the sweep, never next to it
            cal_out = f"{spec.out}/teachers/{teacher.name}-calibration"
            stem = _uncalibrated_stem(teacher.checkpoint)
            if stem is not None:
                sweep_calibrator[teacher.name] = f"{cal_out}/{stem.name}.calibrator.json"
        else:
            assert teacher.config is not None
            run_id = run_id_for({"kind": "teacher", **teacher.config})
            out = f"{spec.out}/teachers/{teacher.name}-{run_id[:8]}"
            plans.append(RunPlan("teacher", run_id, teacher.name, dict(teacher.config), out))
            teacher_ckpt[teacher.name] = (f"{out}/last", (run_id,))
        checkpoint, deps = teacher_ckpt[teacher.name]
        cal_config = {"checkpoint": checkpoint, "method": "temperature"}
        cal_id = run_id_for({"kind": "calibrate", **cal_config})
        plans.append(
            RunPlan(
                "calibrate",
                cal_id,
                f"{teacher.name}-calibrate",
                cal_config,
                cal_out or str(Path(checkpoint).parent),
                deps,
            )
        )
    calibrated = {p.config["checkpoint"]: p.run_id for p in plans if p.kind == "calibrate"}
    seen: set[str] = set()
    grid = itertools.product(
        spec.methods,
        spec.students,
        spec.kd_augments,
        spec.student_resolutions,
        spec.teacher_inputs,
        spec.seeds,
    )
    for method, student, augment, resolution, teacher_input, seed in grid:
        if teacher_input == "low" and resolution is None:
            continue
        baseline = method["method"] == "ce"
        teachers = [None] if baseline else [t for t in spec.teachers if _paired(spec, t.name, student)]
        for teacher in teachers:
            for calibration in ["none"] if baseline else spec.calibrations:
                for tau in [None] if baseline else spec.taus:
                    config: dict[str, Any] = {
                        **spec.distill,
                        "teacher": teacher_ckpt[teacher.name][0] if teacher else None,
                        "student": student["model"],
                        "student_kwargs": student["kwargs"],
                        "method": method["method"],
                        "method_options": method["options"],
                        "teacher_calibration": _teacher_calibration(calibration, teacher, sweep_calibrator),
                        "kd_augment": augment,
                        "student_resolution": resolution,
                        "teacher_input": "full" if baseline or resolution is None else teacher_input,
                        "tau": tau,
                        "seed": seed,
                    }
                    if baseline:
                        config.update(dataset=spec.dataset, dataset_options=_student_data(spec) or None)
                    elif spec.student_train_subset is not None:
                        config.update(dataset_options=_student_data(spec))
                    config_from_dict(DistillConfig, config, source="a run of the sweep")  # validates
                    run_id = run_id_for({"kind": "distill", **config})
                    if run_id in seen:
                        continue
                    seen.add(run_id)
                    parts = [
                        teacher.name if teacher else "alone",
                        student.get("name") or student["model"],
                        method.get("name") or method["method"],
                        calibration if not baseline else None,
                        augment if augment != "none" else None,
                        f"tau{_short(tau)}" if tau is not None else None,
                        f"res{_short(resolution)}-{teacher_input}" if resolution is not None else None,
                        f"s{seed}",
                    ]
                    name = path_safe("-".join(str(p) for p in parts if p))
                    deps: tuple[str, ...] = ()
                    if teacher:  # a raw-logit student does not wait for its teacher's calibration
                        checkpoint, tdeps = teacher_ckpt[teacher.name]
                        deps = tdeps if calibration == "none" else (*tdeps, calibrated[checkpoint])
                    out = f"{spec.out}/students/{name}-{run_id[:8]}"
                    settings = distill_settings(
                        spec.out, teacher.name if teacher else None, first_seed=seed == spec.seeds[0]
                    )
                    plans.append(RunPlan("distill", run_id, name, config, out, deps, settings))
    if spec.robustness is not None:
        plans.extend(_robustness_plans(spec, plans, teacher_ckpt))
    probes = str(Path(spec.out) / PROBES_FILE)
    return [dataclasses.replace(plan, probes=probes) for plan in plans]


def _paired(spec: SweepSpec, teacher: str, student: dict[str, Any]) -> bool:
    """Whether the sweep runs this teacher with this student (always, without ``pairs``)."""
    if spec.pairs is None:
        return True
    return any(t == teacher and s in (student_label(student), student["model"]) for t, s in spec.pairs)


def _uncalibrated_stem(checkpoint: str) -> Path | None:
    """The stem of a foreign checkpoint that has no calibrator stored next to it; None when it has one (or
    cannot be read: its runs will say why)."""
    try:
        return checkpoint_stem(checkpoint) if find_calibrator(checkpoint) is None else None
    except CalikdError:
        return None


def _teacher_calibration(calibration: str, teacher: TeacherEntry | None, sweep_calibrator: dict) -> str:
    """``teacher_calibration`` of a student: ``auto`` and ``temperature`` of a foreign teacher without a
    calibrator of its own name the one this sweep fits for it (inside the sweep folder)."""
    if teacher is not None and teacher.name in sweep_calibrator and calibration in ("auto", "temperature"):
        return sweep_calibrator[teacher.name]
    return calibration


def _robustness_plans(
    spec: SweepSpec, plans: list[RunPlan], teacher_ckpt: dict[str, tuple[str, tuple[str, ...]]]
) -> list[RunPlan]:
    """One ``corrupt`` run (the corrupted test set) and a ``robustness`` run per teacher and student."""
    assert spec.robustness is not None
    corrupt_config = {"dataset": spec.dataset, "dataset_options": spec.dataset_options, **spec.robustness}
    corrupt_id = run_id_for({"kind": "corrupt", **corrupt_config})
    corrupted_dir = f"{spec.out}/corrupted/{spec.dataset}-{corrupt_id[:8]}"
    out = [RunPlan("corrupt", corrupt_id, f"corrupt-{spec.dataset}", corrupt_config, corrupted_dir)]
    calibrations = {p.config["checkpoint"]: p for p in plans if p.kind == "calibrate"}
    targets = [  # (name, checkpoint, the run it evaluates, what it waits for: the teacher's calibrator too)
        (f"{name}-teacher", ckpt, calibrations[ckpt].run_id, (*deps, calibrations[ckpt].run_id))
        for name, (ckpt, deps) in teacher_ckpt.items()
    ]
    targets += [(p.name, f"{p.out_dir}/last", p.run_id, (p.run_id,)) for p in plans if p.kind == "distill"]
    for name, checkpoint, of, deps in targets:
        config = {"checkpoint": checkpoint, "corrupted_dir": corrupted_dir, "of": of}
        run_id = run_id_for({"kind": "robustness", **config})
        out.append(
            RunPlan(
                "robustness",
                run_id,
                f"{name}-robust",
                config,
                f"{spec.out}/robustness/{name}-{run_id[:8]}",
                (*deps, corrupt_id),
            )
        )
    return out
