"""Queries of the results store: lookup by id, prefix or name, filtered lists, CSV export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from results_helpers import CFG, add_run

from calikd.errors import CalikdError, ConfigError
from calikd.results import (
    ResultsStore,
    UnknownRunError,
)


def test_lookup_by_prefix_and_name(store: ResultsStore) -> None:
    rid = add_run(store, CFG)
    for custom in ("abc123", "abc456"):
        store.register(custom, sweep=None, kind="teacher", name=f"t-{custom}", config={"id": custom})
    assert store.get(rid).run_id == rid
    assert store.get(rid[:6]).run_id == rid and store.get(f"  {rid[:6]} ").run_id == rid
    assert store.get("abc1").run_id == "abc123"
    assert store.get("t-abc456").run_id == "abc456"
    with pytest.raises(UnknownRunError, match="ambiguous: abc123, abc456"):
        store.get("abc")
    with pytest.raises(UnknownRunError, match="did you mean 'abc1'"):
        store.get("abd1")
    with pytest.raises(UnknownRunError) as info:
        store.get("zzzzzz")
    assert isinstance(info.value, CalikdError) and "calikd runs list" in str(info.value)
    assert "KeyError" not in str(info.value) and not str(info.value).startswith("'")


def test_list_filters(store: ResultsStore) -> None:
    a = add_run(store, {"x": 1}, kind="teacher")
    b = add_run(store, {"x": 2}, sweep="s2")
    c = add_run(store, {"x": 3}, sweep=None)
    store.claim(a)
    store.finish(a, {"accuracy": 1.0})
    assert [r.run_id for r in store.list_runs()] == [a, b, c]
    assert [r.run_id for r in store.list_runs(sweep="s1")] == [a]
    assert [r.run_id for r in store.list_runs(status="pending")] == [b, c]
    assert [r.run_id for r in store.list_runs(kind="distill", status="pending", sweep="s2")] == [b]
    assert store.list_runs(kind="calibrate") == []
    assert store.status_counts() == {"pending": 2, "running": 0, "finished": 1, "failed": 0}
    assert store.status_counts("s2")["pending"] == 1
    with pytest.raises(ConfigError, match="did you mean 's1'"):
        store.list_runs(sweep="s1x")
    with pytest.raises(ConfigError, match="did you mean 'finished'"):
        store.list_runs(status="finised")
    assert store.add_sweep("s1", {"grid": {"tau": [1, 4]}}) is False and store.add_sweep("s9", {}) is True
    sweeps = {s.name: s for s in store.sweeps()}
    assert sweeps["s1"].spec == {"grid": {"tau": [1, 4]}} and sweeps["s1"].counts == {"finished": 1}


def test_export_csv(store: ResultsStore, tmp_path: Path) -> None:
    a = add_run(store, CFG, kind="teacher")
    b = add_run(store, {"method": "dkd", "student": {"name": "cnn"}, "alpha": 1.5}, sweep="s2")
    store.claim(a)
    store.finish(a, {"accuracy": 0.875, "ece": 0.0123456789}, {"best": "/r/best"}, out_dir="/r")
    out = tmp_path / "out" / "runs.csv"
    assert store.export_csv(out) == 2
    assert [p.name for p in out.parent.iterdir()] == ["runs.csv"]  # no temporary file left behind
    rows = list(csv.DictReader(out.open(newline="")))
    header = list(rows[0])
    assert header[:5] == ["run_id", "sweep", "kind", "name", "status"]
    assert [h for h in header if h.startswith(("config.", "metrics."))] == [
        "config.alpha",
        "config.method",
        "config.seeds",
        "config.student.name",
        "config.student.width",
        "config.tau",
        "metrics.accuracy",
        "metrics.ece",
    ]
    first, second = rows
    assert first["run_id"] == a and first["status"] == "finished" and first["out_dir"] == "/r"
    assert first["config.student.width"] == "16" and first["config.seeds"] == "[0,1]"
    assert float(first["metrics.ece"]) == 0.0123456789 and first["config.alpha"] == ""
    assert first["created_at"].endswith("Z") and float(first["wall_time_s"]) >= 0
    assert second["run_id"] == b and second["metrics.accuracy"] == "" and second["config.alpha"] == "1.5"
    buffer = io.StringIO()
    assert store.export_csv(buffer, store.list_runs(status="pending")) == 1
    assert buffer.getvalue().splitlines()[1].startswith(b)
