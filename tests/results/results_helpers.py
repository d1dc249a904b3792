"""Shared by the results-store tests: a run config and registering a run."""

from __future__ import annotations

from calikd.results import ResultsStore, run_id_for

CFG = {"method": "kd", "tau": 4.0, "student": {"name": "cnn", "width": 16}, "seeds": [0, 1]}


def add_run(store: ResultsStore, config: dict, *, sweep: str | None = "s1", kind: str = "distill") -> str:
    """Register ``config`` as a pending run (name ``run-<id prefix>``); returns its run id."""
    rid = run_id_for(config)
    store.register(rid, sweep=sweep, kind=kind, name=f"run-{rid[:4]}", config=config)
    return rid
