"""The SQLite results store of sweeps: schema, run life cycle, concurrency, crashes, bad files and CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import calikd.cli
from calikd.cli import runs_cmd
from calikd.errors import CalikdError, ConfigError
from calikd.store.results import (
    SCHEMA_VERSION,
    ClaimLostError,
    ResultsStore,
    ResultsStoreError,
    UnknownRunError,
    run_id_for,
    worker_is_gone,
)

# Worker processes import the store modules without calikd/store/__init__.py, which imports torch
# (about 3 s per process on the CI machine); the store itself needs only the standard library.
WORKER = r"""
import json, os, random, sys, time, types
import calikd
store_pkg = types.ModuleType("calikd.store")
store_pkg.__path__ = [os.path.join(os.path.dirname(calikd.__file__), "store")]
sys.modules["calikd.store"] = store_pkg
from calikd.store.results import ResultsStore, run_id_for

db, mode = sys.argv[1], sys.argv[2]
if mode == "sweep":
    index, n_runs, go = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    while not os.path.exists(go):
        time.sleep(0.001)
    store = ResultsStore(db)  # the first open races with the others to create the schema
    configs = [{"seed": i, "model": {"name": "cnn", "width": 8}} for i in range(n_runs)]
    random.Random(index).shuffle(configs)
    for cfg in configs:
        store.register(run_id_for(cfg), sweep="stress", kind="distill", name=f"s{cfg['seed']}", config=cfg)
    done = []
    for cfg in configs:
        rid = run_id_for(cfg)
        if store.claim(rid):
            assert store.heartbeat(rid)
            store.finish(rid, {"accuracy": cfg["seed"] / 100, "ece": 0.01}, {"log": f"/logs/{rid}.txt"})
            done.append(rid)
    print(json.dumps({"worker": store.worker, "done": done}))
elif mode == "claim-and-hang":
    store = ResultsStore(db)
    print("claimed" if store.claim(sys.argv[3]) else "refused", store.worker, flush=True)
    time.sleep(60)
"""


def _worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", WORKER, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


CFG = {"method": "kd", "tau": 4.0, "student": {"name": "cnn", "width": 16}, "seeds": [0, 1]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "runs" / "calikd.db", worker="w1") as s:
        yield s


def _add(store: ResultsStore, config: dict, *, sweep: str | None = "s1", kind: str = "distill") -> str:
    rid = run_id_for(config)
    store.register(rid, sweep=sweep, kind=kind, name=f"run-{rid[:4]}", config=config)
    return rid


# -- schema and values --------------------------------------------------------------------------------


def test_schema_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "calikd.db"
    with ResultsStore(path) as s:
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"runs", "metrics", "artifacts", "sweeps", "sweep_runs", "run_metrics"} <= names
    conn.close()
    ResultsStore(path).close()  # reopening an existing store changes nothing
    assert sqlite3.connect(path).execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_run_id_is_a_stable_hash_of_the_canonical_config(tmp_path: Path) -> None:
    config = {"b": [1, 2], "a": 1}
    assert run_id_for(config) == hashlib.sha256(b'{"a":1,"b":[1,2]}').hexdigest()[:16]
    assert run_id_for({"a": 1, "b": (1, 2)}) == run_id_for(config)  # key order, tuple vs list
    assert run_id_for({"a": np.int64(1), "b": [torch.tensor(1), 2]}) == run_id_for(config)
    assert run_id_for({"a": 1.0, "b": [1, 2]}) != run_id_for(config)  # types count
    assert run_id_for({"p": tmp_path}) == run_id_for({"p": str(tmp_path)})
    for bad in ({"a": math.nan}, {1: "x"}, {"a": object()}):
        with pytest.raises(ConfigError):
            run_id_for(bad)
    with pytest.raises(ConfigError, match="mapping"):
        run_id_for([1, 2])  # type: ignore[arg-type]


# -- the life of a run ----------------------------------------------------------------------------------


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


def test_claim_finish_fail_release(store: ResultsStore, tmp_path: Path) -> None:
    rid = _add(store, CFG)
    other = ResultsStore(store.path, worker="w2")
    assert store.claim(rid)
    assert not other.claim(rid)  # a live worker holds it
    assert store.claim(rid)  # the holder may claim again
    assert store.heartbeat(rid) and not other.heartbeat(rid)
    store.finish(rid, {"accuracy": 0.75}, {"best": tmp_path / "best.safetensors"}, out_dir=tmp_path)
    run = store.get(rid)
    assert run.status == "finished" and run.attempts == 2 and run.worker == "w1"
    assert run.wall_time_s is not None and run.wall_time_s >= 0 and run.finished_at >= run.started_at
    assert run.out_dir == str(tmp_path) and run.artifacts == {"best": str(tmp_path / "best.safetensors")}
    assert not store.claim(rid) and not other.claim(rid, stale_after_s=0)  # a restarted sweep skips it

    rid2 = _add(store, {**CFG, "tau": 1.0})
    assert other.claim(rid2)
    assert other.fail(rid2, "Traceback ...\nRuntimeError: CUDA out of memory")
    run = store.get(rid2)
    assert run.status == "failed" and run.error.endswith("out of memory") and run.wall_time_s >= 0
    assert not store.claim(rid2, retry_failed=False)
    assert store.claim(rid2)  # failed runs are retried by default
    assert store.get(rid2).error is None and store.get(rid2).attempts == 2
    assert store.release(rid2) and store.get(rid2).status == "pending"
    with pytest.raises(ClaimLostError, match="claim"):
        store.finish(rid2, {"accuracy": 0.1})  # not claimed
    store.finish(rid2, {"accuracy": 0.1}, force=True)  # e.g. results imported from elsewhere
    assert store.get(rid2).status == "finished"
    with pytest.raises(UnknownRunError):
        store.claim("0" * 16)
    other.close()


def test_two_stores_of_one_process_are_two_workers(tmp_path: Path) -> None:
    first, second = ResultsStore(tmp_path / "c.db"), ResultsStore(tmp_path / "c.db")
    assert first.worker != second.worker and first.worker.startswith(f"{socket.gethostname()}:{os.getpid()}/")
    rid = _add(first, CFG)
    assert first.claim(rid) and not second.claim(rid)
    with pytest.raises(ClaimLostError):
        second.finish(rid, {"accuracy": 0.5})
    first.close()
    second.close()


def test_stale_run_is_reclaimed_and_the_first_worker_cannot_finish(store: ResultsStore) -> None:
    rid = _add(store, CFG)
    other = ResultsStore(store.path, worker="w2")
    assert store.claim(rid)
    assert not other.claim(rid, stale_after_s=60)
    time.sleep(0.06)
    assert other.claim(rid, stale_after_s=0.05)
    assert not store.heartbeat(rid)
    with pytest.raises(ClaimLostError, match="held by w2"):
        store.finish(rid, {"accuracy": 0.1})
    assert not store.fail(rid, "boom")  # never hides the original exception, writes nothing
    other.finish(rid, {"accuracy": 0.9})
    run = store.get(rid)
    assert run.status == "finished" and run.worker == "w2" and run.attempts == 2
    assert run.metrics == {"accuracy": 0.9}
    other.close()


def test_keep_alive_beats_and_notices_a_takeover(store: ResultsStore) -> None:
    rid = _add(store, CFG)
    store.claim(rid)
    first = store.get(rid).heartbeat_at
    with store.keep_alive(rid, every_s=0.02) as handle:
        time.sleep(0.15)
        assert store.get(rid).heartbeat_at > first and not handle.lost.is_set()
        other = ResultsStore(store.path, worker="w2")
        assert other.claim(rid, stale_after_s=0)
        assert handle.lost.wait(2)
    other.close()


def test_metrics_values_and_sql(store: ResultsStore) -> None:
    rid = _add(store, CFG)
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


def test_lookup_by_prefix_and_name(store: ResultsStore) -> None:
    rid = _add(store, CFG)
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
    a = _add(store, {"x": 1}, kind="teacher")
    b = _add(store, {"x": 2}, sweep="s2")
    c = _add(store, {"x": 3}, sweep=None)
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
    a = _add(store, CFG, kind="teacher")
    b = _add(store, {"method": "dkd", "student": {"name": "cnn"}, "alpha": 1.5}, sweep="s2")
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


# -- bad files -----------------------------------------------------------------------------------------


def test_bad_files_are_refused_by_name(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("these are my notes, not a database\n" * 10)
    with pytest.raises(ResultsStoreError, match=r"notes\.db' is not a calikd results database") as info:
        ResultsStore(text)
    assert info.value.hint and info.value.exit_code == 2
    assert text.read_text().startswith("these are my notes")  # untouched

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    with pytest.raises(ResultsStoreError, match=r"corrupt\.db"):
        ResultsStore(corrupt)

    newer = tmp_path / "newer.db"
    ResultsStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(ResultsStoreError, match=f"newer calikd \\(schema version {SCHEMA_VERSION + 1}"):
        ResultsStore(newer)

    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(ResultsStoreError, match="not a calikd results database \\(tables: customers"):
        ResultsStore(foreign)
    assert sqlite3.connect(foreign).execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # untouched

    with pytest.raises(ResultsStoreError, match="is a folder"):
        ResultsStore(tmp_path)
    with pytest.raises(ResultsStoreError, match="no results database") as info:
        ResultsStore(tmp_path / "missing.db", create=False)
    assert "calikd sweep" in info.value.hint and not (tmp_path / "missing.db").exists()


# -- several processes -----------------------------------------------------------------------------------


def test_concurrent_workers_finish_every_run_once(tmp_path: Path) -> None:
    db, go, n_runs, n_workers = tmp_path / "calikd.db", tmp_path / "go", 40, 4
    procs = [_worker(str(db), "sweep", str(i), str(n_runs), str(go)) for i in range(n_workers)]
    time.sleep(0.3)  # let the interpreters start, then release them together
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "locked" not in err
        results.append(json.loads(out))
    done = [rid for r in results for rid in r["done"]]
    expected = {run_id_for({"seed": i, "model": {"name": "cnn", "width": 8}}) for i in range(n_runs)}
    assert len(done) == n_runs and set(done) == expected  # each run finished by exactly one worker
    with ResultsStore(db, create=False) as s:
        runs = s.list_runs(sweep="stress")
        assert {r.run_id for r in runs} == expected
        assert all(r.status == "finished" and r.attempts == 1 for r in runs)
        assert {r.worker for r in runs} <= {r["worker"] for r in results}
        by_worker = {r["worker"]: set(r["done"]) for r in results}
        assert all(r.run_id in by_worker[r.worker] for r in runs)
        assert all(r.metrics["accuracy"] == r.config["seed"] / 100 for r in runs)
    conn = sqlite3.connect(db)
    counts = [
        conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "metrics", "artifacts")
    ]
    assert counts == [n_runs, 2 * n_runs, n_runs]
    assert conn.execute("SELECT count(*) FROM sweep_runs").fetchone()[0] == n_runs


def test_run_of_a_killed_worker_is_taken_over_at_once(tmp_path: Path) -> None:
    db = tmp_path / "calikd.db"
    with ResultsStore(db, worker="restarted") as s:
        rid = _add(s, CFG)
        proc = _worker(str(db), "claim-and-hang", rid)
        try:
            assert select.select([proc.stdout], [], [], 30)[0], "the worker did not claim within 30 s"
            line = proc.stdout.readline().split()
            assert line[:1] == ["claimed"], line or proc.stderr.read()
            assert not s.claim(rid) and not s.get(rid).is_stale()  # its worker lives: hands off
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        run = s.get(rid)
        assert run.status == "running" and run.worker == line[1] and run.attempts == 1
        assert worker_is_gone(run.worker) and run.is_stale()  # a process of this machine that is gone
        assert s.claim(rid)  # at once: its heartbeat is fresh, but nobody can beat it any more
        s.finish(rid, {"accuracy": 0.5})
        run = s.get(rid)
        assert run.status == "finished" and run.worker == "restarted" and run.attempts == 2


def test_only_gone_processes_of_this_machine_count_as_gone(tmp_path: Path) -> None:
    host = socket.gethostname()
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(exited.stdout)  # exited and reaped: no such process any more
    with ResultsStore(tmp_path / "calikd.db") as s:
        token = s.worker.rsplit("/", 1)[1]  # 6 hex digits, then "@<PID namespace>" in a container
        assert re.fullmatch(r"[0-9a-f]{6}(@[0-9]+)?", token)
        gone = f"{host}:{pid}/abc123{token[6:]}"
        assert worker_is_gone(gone)
        assert not worker_is_gone(s.worker)  # this process
        assert not worker_is_gone(f"{host}:1/abc123{token[6:]}")  # init lives (or belongs to root)
        assert not worker_is_gone(f"other-{host}:{pid}/abc123{token[6:]}")  # other machine: heartbeats
        assert not worker_is_gone(f"{host}:{pid}/abc123@1")  # another PID namespace (container)
        for name in (None, "", "w1", f"{host}:{pid}", f"{host}:{pid}/not-hex", f"{host}:0/abc123"):
            assert not worker_is_gone(name), name
        rid = _add(s, CFG)
        assert s.claim(rid, worker=f"other-{host}:{pid}/abc123{token[6:]}")
        assert not s.claim(rid)  # another machine's worker: only a stale heartbeat frees the run
        assert not s.get(rid).is_stale()
        s._conn.execute("UPDATE runs SET worker = ? WHERE run_id = ?", (gone, rid))
        assert s.get(rid).is_stale() and s.claim(rid)


# -- the command line --------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``calikd.cli.main`` with the runs command registered; returns (exit code, stdout, stderr)."""
    if runs_cmd not in calikd.cli.SUBCOMMANDS:
        monkeypatch.setattr(calikd.cli, "SUBCOMMANDS", (*calikd.cli.SUBCOMMANDS, runs_cmd))

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = calikd.cli.main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "calikd.db"
    with ResultsStore(path, worker="host:1") as s:
        teacher = _add(s, {"model": "resnet20", "seed": 0}, kind="teacher")
        s.claim(teacher)
        s.finish(
            teacher,
            {"accuracy": 0.9125, "ece": 0.031, "nll": 0.3, "brier": 0.1, "top5": 0.99},
            {"best": "runs/t/best.safetensors"},
            out_dir="runs/t",
            wall_time_s=3725.0,
        )
        failed = _add(s, CFG)
        s.claim(failed)
        s.fail(failed, "RuntimeError: boom")
        _add(s, {**CFG, "tau": 1.0}, sweep="s2")
    return path


def test_cli_list(cli, db: Path) -> None:
    code, out, err = cli("runs", "list", "--db", str(db))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "id",
        "sweep",
        "kind",
        "name",
        "status",
        "accuracy",
        "ece",
        "nll",
        "brier",
        "wall",
    ]
    assert "0.9125" in out and "1h02m" in out and "failed" in out
    assert lines[-1] == "3 runs: 1 pending, 1 finished, 1 failed"
    code, out, _ = cli("runs", "list", "--db", str(db), "--status", "finished", "--kind", "teacher")
    assert code == 0 and "1 run: 1 finished" in out and "failed" not in out
    code, out, _ = cli("runs", "list", "--db", str(db), "--sweep", "s2", "--metrics", "top5")
    assert code == 0 and "top5" in out and "pending" in out
    code, out, _ = cli("runs", "list", "--db", str(db), "--kind", "calibrate")
    assert code == 0 and out.startswith("no runs in") and "--kind calibrate" in out
    code, _, err = cli("runs", "list", "--db", str(db), "--metrics", "acuracy")
    assert code == 2 and "did you mean 'accuracy'" in err
    code, _, err = cli("runs", "list", "--db", str(db), "--status", "done")
    assert code == 2 and "invalid choice" in err


def test_cli_show(cli, db: Path) -> None:
    with ResultsStore(db, create=False) as s:
        teacher = s.list_runs(kind="teacher")[0]
    code, out, err = cli("runs", "show", teacher.run_id[:6], "--db", str(db))
    assert code == 0, err
    assert teacher.run_id in out and "finished (attempt 1, worker host:1)" in out
    assert "model  resnet20" in out and "accuracy  0.9125" in out and "runs/t/best.safetensors" in out
    code, out, _ = cli("runs", "show", teacher.name, "--db", str(db), "--json")
    assert code == 0 and json.loads(out)["metrics"]["ece"] == 0.031
    code, out, _ = cli("runs", "show", run_id_for(CFG), "--db", str(db))
    assert code == 0 and "RuntimeError: boom" in out and "student.width  16" in out
    code, _, err = cli("runs", "show", teacher.run_id[:3] + "z", "--db", str(db))
    assert code == 2 and "error: no run" in err and "did you mean" in err and "hint:" in err


def test_cli_export(cli, db: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "export" / "runs.csv"
    code, out, err = cli("runs", "export", "--csv", str(out_csv), "--db", str(db), "--sweep", "s1")
    assert code == 0, err
    assert out.strip() == f"wrote 2 runs to {out_csv}"
    rows = list(csv.DictReader(out_csv.open(newline="")))
    assert sorted(r["status"] for r in rows) == ["failed", "finished"]
    code, out, _ = cli("runs", "export", "--csv", "-", "--db", str(db))
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 3


def test_cli_missing_or_bad_db(cli, tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "calikd.db"
    for argv in (("list",), ("show", "abc"), ("export", "--csv", str(tmp_path / "x.csv"))):
        code, out, err = cli("runs", *argv, "--db", str(missing))
        assert code == 2 and out == ""
        assert f"error: no results database at '{missing}'" in err and "calikd sweep FILE.yaml" in err
    assert not missing.parent.exists() and not (tmp_path / "x.csv").exists()
    bad = tmp_path / "bad.db"
    bad.write_text("hello")
    code, _, err = cli("runs", "list", "--db", str(bad))
    assert code == 2 and "bad.db' is not a calikd results database" in err
