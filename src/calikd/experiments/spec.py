"""Sweep files: a YAML grid of teachers, calibrations, methods, augmentations, resolutions, temperatures and
seeds, expanded into concrete runs with stable ids.

```yaml
name: demo                          # the sweep's name in the results store (default: the file's stem)
out: runs/sweeps/demo               # run folders go here (default: runs/sweeps/<name>)
dataset: fashion-mnist
teachers:                           # trained here (TeacherConfig keys) or existing checkpoints
  - {name: r20, model: resnet20, epochs: 15}
  - {name: mine, checkpoint: runs/t-r20/last}
teacher_defaults: {epochs: 10}      # TeacherConfig keys for every trained teacher
calibrations: [none, temperature]   # --teacher-calibration of the students
methods: [kd, {method: dkd, options: {beta: 8}}]
students: [cnn]                     # model names, or {model: cnn, kwargs: {width: 16}}
kd_augments: [none, cutmix]
student_resolutions: [null, 14]
teacher_inputs: [full]              # full | low (low only with a student resolution)
taus: [null]                        # distillation temperatures (null: the method's default)
seeds: [0, 1, 2]
distill: {epochs: 6}                # DistillConfig keys for every student
student_train_subset: 10000         # optional: students train on a class-stratified subset of the
                                    # teachers' training split (same val and test: the teachers' own)
pairs: [{teacher: r20, student: cnn}]  # optional: only these teacher/student pairs instead of every
                                    # teacher with every student (student: its name or model)
teacher_floors: {"mlp*": 0.88, "*": 0.91}  # optional: least test accuracy per teacher (glob on its
                                    # name or model, the most specific wins); the report flags those below
robustness:                         # optional: every teacher and student also under corruption
  corruptions: benchmark            # all | benchmark | extra | a list of names
  test_subset: 2000                 # corrupt a stratified subset of the test split (default: all of it)
  seed: 0
```

Every teacher is evaluated and temperature-calibrated once on its held-out val split (a ``calibrate`` run);
its numbers are what the analysis correlates with the students'. The baseline method ``ce`` (the student
alone) ignores teachers, calibrations and temperatures, so it runs once per student, augmentation,
resolution and seed. With ``robustness``, a ``corrupt`` run writes the corrupted test set once (CIFAR-10-C
layout, see :mod:`calikd.data.corrupted`) and a ``robustness`` run evaluates each teacher and student on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calikd.corruptions import resolve_corruptions, resolve_table
from calikd.distill.config import DistillConfig
from calikd.errors import ConfigError, did_you_mean
from calikd.teacher.config import TeacherConfig
from calikd.utils.config import config_fields, config_from_dict, load_config_file

SPEC_KEYS = (
    "name",
    "out",
    "dataset",
    "dataset_options",
    "teachers",
    "teacher_defaults",
    "calibrations",
    "methods",
    "students",
    "kd_augments",
    "student_resolutions",
    "teacher_inputs",
    "taus",
    "seeds",
    "distill",
    "robustness",
    "teacher_floors",
    "pairs",
    "student_train_subset",
)
ROBUSTNESS_KEYS = ("corruptions", "test_subset", "seed", "table")
# keys the sweep sets itself: not allowed in teacher_defaults / distill
_TEACHER_OWN = ("dataset", "dataset_options", "out", "resume", "overwrite", "progress")
_DISTILL_OWN = (
    "teacher",
    "student",
    "student_kwargs",
    "method",
    "method_options",
    "teacher_calibration",
    "kd_augment",
    "student_resolution",
    "teacher_input",
    "tau",
    "seed",
    "dataset",
    "dataset_options",
    "out",
    "resume",
    "overwrite",
    "progress",
)


@dataclass
class TeacherEntry:
    """A teacher of the sweep: trained here from ``config``, or an existing ``checkpoint``."""

    name: str
    config: dict[str, Any] | None = None
    checkpoint: str | None = None


@dataclass
class SweepSpec:
    """A parsed, validated sweep file."""

    name: str
    out: str
    dataset: str | None
    dataset_options: dict[str, Any]
    teachers: list[TeacherEntry]
    calibrations: list[str]
    methods: list[dict[str, Any]]
    students: list[dict[str, Any]]
    kd_augments: list[str]
    student_resolutions: list[float | None]
    teacher_inputs: list[str]
    taus: list[float | None]
    seeds: list[int]
    distill: dict[str, Any] = field(default_factory=dict)
    robustness: dict[str, Any] | None = None
    teacher_floors: dict[str, float] = field(default_factory=dict)
    pairs: list[tuple[str, str]] | None = None
    student_train_subset: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_keys(data: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in valid:
            raise ConfigError(
                f"unknown key '{key}' in {where}{did_you_mean(str(key), valid)}",
                hint=f"valid keys: {', '.join(valid)}",
            )


_MAX_NAME = 100


def check_name(name: Any, what: str) -> str:
    """``name`` if it is one safe path component (it names a folder of the sweep), else a ConfigError."""
    text = str(name)
    bad = (
        not text
        or text.startswith(".")
        or len(text) > _MAX_NAME
        or any(c in text for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in text)
        or text != text.strip()
    )
    if bad:
        raise ConfigError(
            f"{what} {text!r} cannot name a folder: it must be one path component of at most {_MAX_NAME} "
            "characters, without '/', '\\', control characters or surrounding spaces, not starting "
            "with '.'",
            hint="use letters, digits, '-', '_' and '.', e.g. 'r20-long'",
        )
    return text


def path_safe(text: str) -> str:
    """``text`` with the characters that would leave or nest a folder replaced (for run names built from
    values such as a calibrator path)."""
    safe = "".join("_" if c in "/\\" or ord(c) < 32 else c for c in text)
    return "_" + safe[1:] if safe.startswith(".") else safe


def _refuse_own(data: dict[str, Any], own: tuple[str, ...], where: str) -> None:
    clash = sorted(set(data) & set(own))
    if clash:
        raise ConfigError(f"{where} may not set {', '.join(clash)}: the sweep sets these itself")


def parse_spec(data: dict[str, Any], *, default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (see the module docstring) and return a :class:`SweepSpec`."""
    if not isinstance(data, dict):
        raise ConfigError(f"a sweep must be a mapping of keys to values, not {type(data).__name__}")
    _check_keys(data, SPEC_KEYS, "the sweep file")
    name = check_name(data.get("name") or default_name, "sweep name")
    teacher_defaults = dict(data.get("teacher_defaults") or {})
    _refuse_own(teacher_defaults, _TEACHER_OWN, "teacher_defaults")
    dataset = data.get("dataset")
    dataset_options = dict(data.get("dataset_options") or {})
    teachers: list[TeacherEntry] = []
    for entry in _as_list(data.get("teachers"), "teachers"):
        entry = {"model": entry} if isinstance(entry, str) else dict(entry)
        label = check_name(entry.pop("name", None) or _default_teacher_name(entry), "teacher name")
        if "checkpoint" in entry:
            if set(entry) != {"checkpoint"}:
                raise ConfigError(f"teacher '{label}': an existing checkpoint takes no training options")
            teachers.append(TeacherEntry(label, checkpoint=str(entry["checkpoint"])))
            continue
        if not dataset:
            raise ConfigError("the sweep trains teachers, so it needs a 'dataset'")
        _refuse_own(entry, _TEACHER_OWN, f"teacher '{label}'")
        config = {**teacher_defaults, **entry, "dataset": dataset, "dataset_options": dataset_options}
        config_from_dict(TeacherConfig, config, source=f"teacher '{label}' of the sweep")  # validates
        teachers.append(TeacherEntry(label, config=config))
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ConfigError(f"teacher names must be unique, got {names}", hint="give each teacher a 'name'")
    methods = []
    for entry in _as_list(data.get("methods") or ["kd"], "methods"):
        entry = {"method": entry} if isinstance(entry, str) else dict(entry)
        _check_keys(entry, ("method", "options", "name"), "a methods entry")
        methods.append(
            {
                "method": entry["method"],
                "options": dict(entry.get("options") or {}),
                "name": check_name(entry["name"], "method name") if entry.get("name") else None,
            }
        )
    students = []
    for entry in _as_list(data.get("students") or ["cnn"], "students"):
        entry = {"model": entry} if isinstance(entry, str) else dict(entry)
        _check_keys(entry, ("model", "kwargs", "name"), "a students entry")
        students.append(
            {
                "model": entry["model"],
                "kwargs": dict(entry.get("kwargs") or {}),
                "name": check_name(entry["name"], "student name") if entry.get("name") else None,
            }
        )
    distill = dict(data.get("distill") or {})
    _refuse_own(distill, _DISTILL_OWN, "distill")
    valid_distill = config_fields(DistillConfig)
    _check_keys(distill, tuple(valid_distill), "the sweep's distill options")
    spec = SweepSpec(
        name=name,
        out=str(data.get("out") or f"runs/sweeps/{name}"),
        dataset=dataset,
        dataset_options=dataset_options,
        teachers=teachers,
        calibrations=[str(c) for c in _as_list(data.get("calibrations") or ["none"], "calibrations")],
        methods=methods,
        students=students,
        kd_augments=[str(a) for a in _as_list(data.get("kd_augments") or ["none"], "kd_augments")],
        student_resolutions=_as_list(data.get("student_resolutions") or [None], "student_resolutions"),
        teacher_inputs=[str(v) for v in _as_list(data.get("teacher_inputs") or ["full"], "teacher_inputs")],
        taus=_as_list(data.get("taus") or [None], "taus"),
        seeds=_parse_seeds(data.get("seeds") or [0]),
        distill=distill,
        robustness=_parse_robustness(data.get("robustness"), dataset),
        teacher_floors=parse_floors(data.get("teacher_floors")),
        student_train_subset=_parse_subset(data.get("student_train_subset"), dataset_options),
        raw=dict(data),
    )
    spec.pairs = _parse_pairs(data.get("pairs"), spec)
    if not spec.dataset and any(m["method"] == "ce" for m in spec.methods):
        raise ConfigError("the baseline method 'ce' (the student alone) needs the sweep's 'dataset'")
    if not spec.teachers and any(m["method"] != "ce" for m in spec.methods):
        raise ConfigError("the sweep distils, so it needs at least one entry under 'teachers'")
    return spec


def _parse_subset(value: Any, dataset_options: dict[str, Any]) -> int | None:
    """``student_train_subset``: a positive number of training images, at most the teachers' subset."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"student_train_subset must be a positive integer, got {value!r}")
    teachers = dataset_options.get("train_subset")
    if teachers is not None and value > teachers:
        raise ConfigError(
            f"student_train_subset {value} exceeds the teachers' train_subset {teachers}",
            hint="students train on a subset of the teachers' training split",
        )
    return value


def student_label(student: dict[str, Any]) -> str:
    return student.get("name") or student["model"]


def _parse_pairs(value: Any, spec: SweepSpec) -> list[tuple[str, str]] | None:
    """The sweep's ``pairs``: (teacher name, student name or model), each naming an entry of the sweep."""
    if value is None:
        return None
    teachers = [t.name for t in spec.teachers]
    students = {student_label(s) for s in spec.students} | {s["model"] for s in spec.students}
    pairs = []
    for entry in _as_list(value, "pairs"):
        if not isinstance(entry, dict):
            raise ConfigError(
                f"each entry of 'pairs' must be a mapping, got {entry!r}",
                hint="e.g. pairs: [{teacher: r56, student: resnet20}]",
            )
        _check_keys(entry, ("teacher", "student"), "a pairs entry")
        teacher, student = str(entry.get("teacher")), str(entry.get("student"))
        if teacher not in teachers:
            raise ConfigError(
                f"pairs: no teacher named '{teacher}'{did_you_mean(teacher, teachers)}",
                hint=f"the sweep's teachers: {', '.join(teachers)}",
            )
        if student not in students:
            raise ConfigError(
                f"pairs: no student '{student}'{did_you_mean(student, sorted(students))}",
                hint=f"the sweep's students: {', '.join(sorted(students))}",
            )
        pairs.append((teacher, student))
    return pairs


def parse_floors(value: Any) -> dict[str, float]:
    """The sweep's ``teacher_floors``: glob patterns (teacher name or model) -> least test accuracy."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"'teacher_floors' must map model-name patterns to accuracies, got {type(value).__name__}",
            hint='e.g. teacher_floors: {"mlp*": 0.88, "*": 0.91}',
        )
    floors = {}
    for pattern, floor in value.items():
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
            raise ConfigError(
                f"teacher floor for '{pattern}' must be an accuracy in [0, 1], got {floor!r}",
                hint="write 0.91 for 91%",
            )
        floors[str(pattern)] = float(floor)
    return floors


def floor_for(name: str, model: str | None, floors: dict[str, float]) -> float | None:
    """The floor of the most specific pattern in ``floors`` that the teacher's ``name`` or ``model`` matches
    (None: no floor). Most specific: an exact name or model first, then the pattern with the most literal
    characters (``mlp_l*`` before ``mlp*`` before ``*``), then the smaller floor; the order of the mapping
    does not matter (stored sweep specs sort their keys)."""
    keys = [name] if model is None else [name, model]
    matches = [(p, f) for p, f in floors.items() if any(fnmatch.fnmatchcase(k, p) for k in keys)]
    if not matches:
        return None

    def specificity(item: tuple[str, float]) -> tuple[bool, bool, int, float]:
        pattern, floor = item
        literal = sum(1 for ch in pattern if ch not in "*?[]")
        return (pattern == name, pattern in keys, literal, -floor)

    return max(matches, key=specificity)[1]


def _parse_seeds(value: Any) -> list[int]:
    """The sweep's ``seeds``: non-negative integers."""
    seeds = _as_list(value, "seeds")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ConfigError(
            f"the sweep's 'seeds' must be non-negative integers, got {bad}", hint="e.g. seeds: [0, 1, 2]"
        )
    return [int(s) for s in seeds]


def _parse_robustness(value: Any, dataset: str | None) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    entry = {} if value is True else value
    if not isinstance(entry, dict):
        raise ConfigError(f"'robustness' must be a mapping (or true), got {type(entry).__name__}")
    _check_keys(entry, ROBUSTNESS_KEYS, "the sweep's robustness options")
    if not dataset:
        raise ConfigError("'robustness' needs the sweep's 'dataset' (the test split to corrupt)")
    subset = entry.get("test_subset")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ConfigError(f"robustness test_subset must be a positive integer, got {subset!r}")
    table = str(entry.get("table", "auto"))
    resolve_table(table, 32, 32)  # validates the name
    return {
        "corruptions": resolve_corruptions(entry.get("corruptions", "benchmark")),
        "test_subset": subset,
        "seed": int(entry.get("seed", 0)),
        "table": table,
    }


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file."""
    return parse_spec(load_config_file(path), default_name=Path(path).stem)


def _default_teacher_name(entry: dict[str, Any]) -> str:
    """A teacher's name when it has none: its model, or the folder of its checkpoint."""
    if entry.get("model"):
        return str(entry["model"])
    path = Path(str(entry.get("checkpoint")))
    folder = path if path.is_dir() else path.parent
    return path_safe(Path(os.path.abspath(folder)).name or "teacher")


def spec_to_dict(spec: SweepSpec) -> dict[str, Any]:
    """JSON-ready form of the spec (stored with the sweep), with the sweep file it was parsed from under
    ``file`` (left out if that holds values JSON cannot carry): :func:`recorded_file` gives it back."""
    out = dataclasses.asdict(spec)
    raw = out.pop("raw", None)
    with contextlib.suppress(TypeError, ValueError):
        out["file"] = json.loads(json.dumps(raw, allow_nan=False))
    return out


def recorded_file(stored: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The sweep file a results store recorded for sweep ``name`` (``SweepRecord.spec``): parse it with
    :func:`parse_spec` to plan the same runs again."""
    if not isinstance(stored, Mapping) or not isinstance(stored.get("file"), Mapping):
        raise ConfigError(
            f"the store holds no sweep file for '{name}' (recorded before sweeps kept theirs)",
            hint="use the sweep file it was run from",
        )
    return {"name": name, **stored["file"]}  # a file without a name took its file name
