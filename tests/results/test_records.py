"""Result records: registering runs and sweeps, finishing runs with their metrics."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
import torch
from results_helpers import CFG, add_run

from calikd.errors import ConfigError
from calikd.results import (
    ResultsStore,
    run_id_for,
)


def test_register_is_idempotent(store: ResultsStore) -> None:
    rid = run_id_for(CFG)
    assert store.register(rid, sweep="s1", kind="distill", name="kd", config=CFG, hashes={"data": "d1"})
    assert not store.register(rid, sweep="s1", kind="distill", name="kd", config=dict(reversed(CFG.items())))
    assert not store.register(rid, sweep="s2", kind="distill", name="other", config=CFG, hashes={"t": "t1"})
    run = store.get(rid)
    assert (run.status, run.name, run.sweep, run.sweeps) == ("pending", "kd", "s1", ("s1", "s2"))
    assert run.config == json.loads(json.dumps(CFG)) and run.hashes == {"data": "d1", "t": "t1"}
    assert len(store.list_runs()) == 1 and [s.name for s in store.sweeps()] == ["s1", "s2"]
    with pytest.raises(ConfigError, match="another config"):
        store.register(rid, sweep="s1", kind="distill", name="kd", config={**CFG, "tau": 2.0})
    store.claim(rid)
    store.finish(rid, {"accuracy": 0.5})
    with pytest.raises(ConfigError, match="other inputs"):  # the teacher changed under a finished run
        store.register(rid, sweep="s1", kind="distill", name="kd", config=CFG, hashes={"t": "t2"})
    with pytest.raises(ConfigError):
        store.register("has space", sweep=None, kind="distill", name="x", config={})


def test_metrics_values_and_sql(store: ResultsStore) -> None:
    rid = add_run(store, CFG)
    store.claim(rid)
    with pytest.raises(ConfigError, match="'acc' must be a number"):
        store.finish(rid, {"acc": "0.5"})
    with pytest.raises(ConfigError):
        store.finish(rid, {"flag": True})
    with pytest.raises(ConfigError):
        store.finish(rid, {"": 1.0})
    assert store.get(rid).status == "running"  # nothing written by a refused finish
    metrics = {
        "accuracy": np.float32(0.5),
        "ece": torch.tensor(0.25),
        "n": 7,
        "nll": math.nan,
        "inf": -math.inf,
        "none": None,
    }
    store.finish(rid, metrics, hashes={"student": "abc"}, wall_time_s=12.5)
    run = store.get(rid)
    assert run.metrics == {"accuracy": 0.5, "ece": 0.25, "inf": None, "n": 7.0, "nll": None, "none": None}
    assert run.wall_time_s == 12.5 and run.hashes == {"student": "abc"}
    store.finish(rid, {"accuracy": 0.6}, force=True)  # metrics replaced, not merged
    assert store.get(rid).metrics == {"accuracy": 0.6}
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT run_id, value FROM run_metrics WHERE metric = 'accuracy'").fetchall() == [
        (rid, 0.6)
    ]
