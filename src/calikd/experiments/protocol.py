"""A sweep against the study protocol: teachers at their accuracy floor and converged, students converged, and
the spread of the teachers' fitted temperatures (shown by sweep reports and reproduction reports)."""

from __future__ import annotations

from dataclasses import dataclass

from calikd.errors import CalikdError
from calikd.experiments.spec import floor_for
from calikd.report.sweep import SweepResults
from calikd.results import RunRecord
from calikd.store import read_meta

OVER_CONFIDENT_T, UNDER_CONFIDENT_T = 1.25, 0.85  # fitted temperatures that count as clearly mis-calibrated


def _teacher_model(path: str, run: RunRecord | None) -> str | None:
    """A teacher's model name: from its training run, else from its checkpoint's metadata."""
    if run is not None:
        return run.config.get("model")
    try:
        return read_meta(path).get("model", {}).get("name")
    except CalikdError:
        return None


@dataclass(frozen=True)
class TeacherCheck:
    """A teacher of the sweep against the protocol: its floor (None: none asked), whether it is below it,
    and whether its training run converged (None: trained outside the sweep)."""

    name: str
    floor: float | None
    below: bool
    converged: float | None
    temperature: float | None


def teacher_checks(results: SweepResults, floors: dict[str, float]) -> dict[str, TeacherCheck]:
    """Every calibrated teacher (by checkpoint) checked against ``floors`` and for convergence."""
    checks = {}
    for path, run in results.teachers.items():
        trained = results.teacher_run(path)
        name = results.teacher_name(path)
        floor = floor_for(name, _teacher_model(path, trained), floors)
        accuracy = run.metrics.get("test_raw_accuracy")
        checks[path] = TeacherCheck(
            name=name,
            floor=floor,
            below=floor is not None and accuracy is not None and accuracy < floor,
            converged=trained.metrics.get("converged") if trained is not None else None,
            temperature=run.metrics.get("temperature"),
        )
    return checks


def protocol_rows(results: SweepResults, floors: dict[str, float]) -> list[tuple[str, str]]:
    """How the sweep's teachers and students stand against the protocol (floors, convergence, T spread)."""
    checks = list(teacher_checks(results, floors).values())
    rows = []
    if checks:
        floored = [c for c in checks if c.floor is not None]
        if floored:
            below = [c.name for c in floored if c.below]
            rows.append(
                (
                    "teachers at or above their accuracy floor",
                    f"{len(floored) - len(below)}/{len(floored)}"
                    + (f" (below: {', '.join(below)})" if below else ""),
                )
            )
        known = [c for c in checks if c.converged is not None]
        if known:
            not_converged = [c.name for c in known if not c.converged]
            rows.append(
                (
                    "teachers converged",
                    f"{len(known) - len(not_converged)}/{len(known)}"
                    + (f" (not: {', '.join(not_converged)})" if not_converged else ""),
                )
            )
        temps = sorted(c.temperature for c in checks if c.temperature is not None)
        if temps:
            over = sum(t >= OVER_CONFIDENT_T for t in temps)
            under = sum(t <= UNDER_CONFIDENT_T for t in temps)
            rows.append(
                (
                    "teacher temperatures (fitted on val)",
                    f"{temps[0]:.2f} to {temps[-1]:.2f}; {over} over-confident (T >= {OVER_CONFIDENT_T}), "
                    f"{under} under-confident (T <= {UNDER_CONFIDENT_T}) of {len(temps)}",
                )
            )
    flags = [r.metrics.get("converged") for r in results.students]
    known_flags = [f for f in flags if f is not None]
    if known_flags:
        rows.append(("students converged", f"{sum(1 for f in known_flags if f)}/{len(known_flags)}"))
    return rows
