"""How much of a sweep's wall time its runs spend training.

Every teacher and student run records ``train_loop_seconds``, the seconds of its epoch loops (the runs' own
``wall_time_s``); calibrations, corrupted sets and robustness evaluations train nothing: they are the
measurements a study asks for (*evaluation runs*, their whole ``wall_time_s``). A sweep process divides each
sum over the runs it executed by its wall time times its parallel slots (workers): the *training share* and
the *evaluation share*; the rest is the *overhead share*, split in two by the runs' own wall times: *inside
the runs* (start-up, data loading, a run's own evaluations and files) and *workers idle* (slot time with no
run in it: a worker with no run ready, all that is left waiting for a longer run to finish; the sweep's
planning and reports). Under Ray the cluster's parallelism is not known here, so slots is 1 and the shares
can exceed 1. Each sweep process appends its numbers to ``<sweep out>/timing.json``, which the sweep report
reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from calikd.results import RunRecord
from calikd.utils.io import atomic_write_json

TRAIN_LOOP_METRIC = "train_loop_seconds"
TIMING_FILE = "timing.json"
EVALUATION_KINDS = ("calibrate", "corrupt", "robustness")  # runs that measure, train nothing


@dataclass(frozen=True)
class SweepTiming:
    """One sweep process: its wall time, parallel slots, runs executed, their training-loop seconds and the
    seconds of its evaluation runs (:data:`EVALUATION_KINDS`)."""

    wall_s: float
    train_loop_s: float
    runs: int
    slots: int = 1
    evaluation_s: float = 0.0
    run_s: float = 0.0  # Σ of the runs' own wall times (0: not recorded, the overhead is not split)

    def _share(self, seconds: float) -> float | None:
        """``seconds`` / (wall time x slots); None for a process that ran nothing."""
        if self.runs == 0 or self.wall_s <= 0:
            return None
        return seconds / (self.wall_s * self.slots)

    @property
    def ratio(self) -> float | None:
        """Σ(training-loop time) / (wall time x slots); None for a process that ran nothing."""
        return self._share(self.train_loop_s)

    @property
    def evaluation_ratio(self) -> float | None:
        """Σ(evaluation-run time) / (wall time x slots); None for a process that ran nothing."""
        return self._share(self.evaluation_s)

    @property
    def overhead(self) -> float | None:
        """The share of wall time x slots spent neither in training loops nor in evaluation runs."""
        share = self._share(self.train_loop_s + self.evaluation_s)
        return None if share is None else max(0.0, 1 - share)

    @property
    def idle(self) -> float | None:
        """The share of wall time x slots in which a worker held no run (None when ``run_s`` is unknown)."""
        share = self._share(self.run_s)
        return None if share is None or self.run_s <= 0 else max(0.0, 1 - share)

    @property
    def inside_runs(self) -> float | None:
        """The overhead share spent inside the runs (start-up, their own evaluations and files)."""
        if self.idle is None or self.overhead is None:
            return None
        return max(0.0, self.overhead - self.idle)

    def line(self) -> str:
        """One line for the sweep's end, e.g. ``training loops 9.3 s of 15.5 s wall: 60% training, 40%
        overhead`` (with evaluation runs: ``..., 20% evaluation runs, 5% overhead``)."""
        if self.ratio is None or self.overhead is None:
            return f"no run executed in this process ({self.wall_s:.1f} s wall)"
        slots = f" x {self.slots} workers" if self.slots > 1 else ""
        evaluation, evaluation_share = "", ""
        if self.evaluation_s > 0:
            evaluation = f" and evaluation runs {self.evaluation_s:.1f} s"
            evaluation_share = f"{self.evaluation_ratio:.0%} evaluation runs, "
        split = ""
        if self.idle is not None and self.inside_runs is not None:
            split = f" ({self.inside_runs:.0%} inside the runs, {self.idle:.0%} workers idle)"
        return (
            f"training loops {self.train_loop_s:.1f} s{evaluation} of {self.wall_s:.1f} s wall{slots} "
            f"({self.runs} runs): {self.ratio:.0%} training, {evaluation_share}{self.overhead:.0%} overhead"
            f"{split}"
        )


def train_loop_seconds(runs: Iterable[RunRecord]) -> float:
    """Σ ``train_loop_seconds`` over ``runs`` (runs without it train nothing)."""
    return sum(r.metrics.get(TRAIN_LOOP_METRIC) or 0.0 for r in runs)


def run_seconds(runs: Iterable[RunRecord]) -> float:
    """Σ ``wall_time_s`` over ``runs``: the slot time they held."""
    return sum(r.wall_time_s or 0.0 for r in runs)


def evaluation_seconds(runs: Iterable[RunRecord]) -> float:
    """Σ ``wall_time_s`` over the evaluation runs (:data:`EVALUATION_KINDS`) among ``runs``."""
    return run_seconds(r for r in runs if r.kind in EVALUATION_KINDS)


def append_timing(out: str | Path, timing: SweepTiming) -> Path:
    """Add ``timing`` (one sweep process) to ``<out>/timing.json``."""
    path = Path(out) / TIMING_FILE
    entries = read_timings(out)
    entries.append(timing)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, [asdict(t) for t in entries])
    return path


def read_timings(out: str | Path) -> list[SweepTiming]:
    """Every sweep process recorded in ``<out>/timing.json`` (none when it is missing or unreadable)."""
    path = Path(out) / TIMING_FILE
    try:
        data: Any = json.loads(path.read_text())
        return [SweepTiming(**entry) for entry in data]
    except (OSError, ValueError, TypeError):
        return []


def total(timings: Iterable[SweepTiming]) -> SweepTiming:
    """The processes of a sweep taken together (slot-seconds summed)."""
    items = [t for t in timings if t.runs]
    slot_s = sum(t.wall_s * t.slots for t in items)
    split = all(t.run_s > 0 for t in items)  # older entries did not record it: no split then
    return SweepTiming(
        wall_s=slot_s,
        train_loop_s=sum(t.train_loop_s for t in items),
        runs=sum(t.runs for t in items),
        evaluation_s=sum(t.evaluation_s for t in items),
        run_s=sum(t.run_s for t in items) if split else 0.0,
    )


def timing_paragraph(runs: list[RunRecord], out: str | Path | None) -> str | None:
    """The sweep report's line on where the time went: the sweep processes' training share (from
    ``<out>/timing.json``) and the runs' own (training loops over the runs' wall times)."""
    finished = [r for r in runs if r.status == "finished"]
    train_s = train_loop_seconds(finished)
    run_s = run_seconds(finished)
    if not finished or run_s <= 0:
        return None
    parts = []
    timings = read_timings(out) if out is not None else []
    whole = total(timings)
    if whole.ratio is not None and whole.overhead is not None:
        evaluation = (
            f", evaluation runs (calibrations, corrupted sets, robustness) {whole.evaluation_ratio:.0%}"
            if whole.evaluation_s > 0
            else ""
        )
        split = (
            f" ({whole.inside_runs:.0%} inside the runs, {whole.idle:.0%} workers idle: "
            "no run ready while longer runs finish, planning, reports)"
            if whole.idle is not None and whole.inside_runs is not None
            else ""
        )
        parts.append(
            f"Training loops took {whole.ratio:.0%} of the sweep's wall time ({whole.train_loop_s:.1f} s of "
            f"{whole.wall_s:.1f} worker-seconds over {len(timings)} sweep process(es)){evaluation}; "
            f"overhead {whole.overhead:.0%}{split}."
        )
    parts.append(
        f"Inside the runs, training loops took {train_s / run_s:.0%} of their {run_s:.1f} s "
        f"({len(finished)} finished runs)."
    )
    return " ".join(parts)
