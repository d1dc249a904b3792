"""``calikd report``: a sweep's results (or one distillation run's) as Markdown and self-contained HTML.

This module gathers the data: it reads the sweep's runs from the results store, checks its teachers against
the study protocol and times it; the documents are rendered by :mod:`calikd.report.sweep` and
:mod:`calikd.report.run`.
"""

from __future__ import annotations

import json
from pathlib import Path

from calikd.distill import distiller_info
from calikd.errors import ConfigError
from calikd.experiments.overhead import timing_paragraph
from calikd.experiments.protocol import teacher_checks
from calikd.experiments.spec import parse_floors
from calikd.report import write_report
from calikd.report.run import run_summary
from calikd.report.sweep import Preface, SweepResults, sweep_document
from calikd.results import ResultsStore
from calikd.utils.run_lock import hold_run_dir, locks_run_dir

__all__ = ["SweepResults", "run_report", "sweep_report"]


def default_tau(method: str) -> float | None:
    """The distillation temperature ``method`` uses when the run sets none (None: it has no such option)."""
    return distiller_info(method)["options"].get("tau", {}).get("default")


@locks_run_dir
def sweep_report(
    db_path: str,
    sweep: str,
    out_dir: str | Path,
    *,
    preface: Preface | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (with PNG plots) for ``sweep`` into ``out_dir``;
    ``preface(doc, results)`` adds sections first (a reproduction's claim and numbers)."""
    with ResultsStore(db_path, create=False) as store:
        runs = store.list_runs(sweep=sweep)
        counts = store.status_counts(sweep=sweep)
        spec = next((s.spec for s in store.sweeps() if s.name == sweep), None)
    out = Path(out_dir)
    hold_run_dir(out)  # one writer at a time; creates it
    results = SweepResults(runs)
    doc = sweep_document(
        results,
        out,
        sweep=sweep,
        source=db_path,
        counts=counts,
        teacher_checks=teacher_checks(results, parse_floors((spec or {}).get("teacher_floors"))),
        default_tau=default_tau,
        timing=timing_paragraph(runs, (spec or {}).get("out")),
        preface=preface,
    )
    return write_report(doc, out, "report", title=f"calikd sweep {sweep}")


@locks_run_dir
def run_report(run_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Markdown + HTML for one distillation run folder (from its ``report.json``)."""
    folder = Path(run_dir)
    path = folder / "report.json"
    if not path.exists():
        raise ConfigError(
            f"'{run_dir}' holds no report.json (not a finished distillation run)",
            hint="give a run folder written by `calikd distill`, or a sweep name with --db",
        )
    hold_run_dir(out_dir or folder)  # not while the run (or another report) writes there
    doc = run_summary(json.loads(path.read_text()), folder)
    return write_report(doc, out_dir or folder, "summary", title=f"calikd run {folder.name}")
