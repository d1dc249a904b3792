"""A sweep's finished runs joined for its document: teachers (from their calibrate runs), student groups
(one per configuration, its seeds together) and robustness results joined onto the runs they evaluate.

The runs are the results store's records, read by attribute only (:class:`SweepRun`): the store is queried
by :mod:`calikd.experiments.report`, which hands the records over.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from calikd.analysis import format_mean_std, mean_std

GROUP_KEYS = (
    "teacher",
    "student",
    "method",
    "method_options",
    "teacher_calibration",
    "kd_augment",
    "student_resolution",
    "teacher_input",
    "tau",
)
QUIET = (None, "none", "full", "{}")  # setting values left out of a setting's label


class SweepRun(Protocol):
    """What the document reads of a run record (``calikd.results`` store)."""

    run_id: str
    name: str
    kind: str
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    artifacts: dict[str, Any]
    out_dir: str | None


class SweepResults:
    """The finished runs of one sweep, joined: teachers (from calibrate runs) and student groups."""

    def __init__(self, runs: list[Any]) -> None:
        self.runs = runs
        self.calibrations = [r for r in runs if r.kind == "calibrate" and r.status == "finished"]
        self.teacher_names = {
            r.config["checkpoint"]: r.name.removesuffix("-calibrate") for r in self.calibrations
        }
        self.teachers = {r.config["checkpoint"]: r for r in self.calibrations}
        # the training runs of the sweep's teachers, by the name of their folder (``<name>-<run id>``): a
        # calibrate run reads ``<folder>/last``, the teacher's own or, for a teacher trained by another sweep
        # of the store (one zoo shared by several), this sweep's copy of it, which has the same name
        self._teacher_runs = {
            Path(r.out_dir).name: r
            for r in runs
            if r.kind == "teacher" and r.status == "finished" and r.out_dir
        }
        self.students = [r for r in runs if r.kind == "distill" and r.status == "finished"]
        groups: dict[tuple, list[Any]] = defaultdict(list)
        for run in self.students:
            groups[tuple(freeze(run.config.get(k)) for k in GROUP_KEYS)].append(run)
        self.groups = dict(groups)
        # robustness runs (sweeps with `robustness`): joined onto the runs they evaluate
        robust = {r.config["of"]: r for r in runs if r.kind == "robustness" and r.status == "finished"}
        self.robustness_runs = list(robust.values())
        for run in self.students:
            if run.run_id in robust:
                run.metrics.update({f"student_{k}": v for k, v in robust[run.run_id].metrics.items()})
        self.teacher_robustness = {
            r.config["checkpoint"]: robust[r.run_id].metrics for r in self.calibrations if r.run_id in robust
        }

    def teacher_run(self, path: str) -> Any | None:
        """The training run of the teacher whose checkpoint is ``path`` (None: trained outside the store)."""
        return self._teacher_runs.get(Path(path).parent.name)

    def teacher_name(self, path: str | None) -> str:
        return "—" if path is None else self.teacher_names.get(path, Path(path).parent.name)

    def label(self, key: tuple) -> str:
        cfg = config_of(key)
        parts = [
            self.teacher_name(cfg["teacher"]) if cfg["teacher"] else "alone",
            cfg["student"],
            cfg["method"],
        ]
        if cfg["teacher"]:
            parts.append(f"cal={cfg['teacher_calibration']}")
        if cfg["kd_augment"] != "none":
            parts.append(cfg["kd_augment"])
        if cfg["tau"] is not None:
            parts.append(f"tau={cfg['tau']:g}")
        if cfg["student_resolution"] is not None:
            parts.append(f"res={cfg['student_resolution']:g} ({cfg['teacher_input']})")
        return ", ".join(str(p) for p in parts)

    def values(self, key: tuple, metric: str) -> list[float | None]:
        """``metric`` of the group's students: test metric (``ece``) or robustness metric (``corrupt_ece``)"""
        name = f"student_{metric}" if metric.startswith(("corrupt_", "clean_")) else f"student_test_{metric}"
        return [r.metrics.get(name) for r in self.groups[key]]

    def sorted_groups(self) -> list[tuple[tuple, list[Any]]]:
        """The student groups ordered by their label."""
        return sorted(self.groups.items(), key=lambda kv: self.label(kv[0]))


def config_of(key: tuple) -> dict[str, Any]:
    """A group key as the configuration it stands for (:data:`GROUP_KEYS` -> value)."""
    return dict(zip(GROUP_KEYS, key, strict=True))


def freeze(value: Any) -> Any:
    """A configuration value as a hashable group-key part (dicts and lists as sorted JSON)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def cell(values: Iterable[float | None], digits: int = 4) -> str:
    """``mean ± std`` over seeds of the recorded values (the mean alone for one seed, ``n/a`` for none)."""
    return format_mean_std(*mean_std(values, skip_missing=True), digits=digits)


def seed_mean(values: Iterable[float | None]) -> float:
    """The mean over seeds of the recorded values (NaN for none)."""
    return mean_std(values, skip_missing=True)[0]
