"""The job queue of the results store: claims, heartbeats, takeovers, several worker processes."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from results_helpers import CFG, add_run

from calikd.results import (
    ClaimLostError,
    ResultsStore,
    UnknownRunError,
    run_id_for,
    worker_is_gone,
)

# Worker processes import only calikd.results, which needs only the standard library: no torch to import
# (about 3 s per process on the CI machine; tests/results/test_schema.py checks that it stays so).
WORKER = r"""
import json, os, random, sys, time
from calikd.results import ResultsStore, run_id_for

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


def test_claim_finish_fail_release(store: ResultsStore, tmp_path: Path) -> None:
    rid = add_run(store, CFG)
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

    rid2 = add_run(store, {**CFG, "tau": 1.0})
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
    rid = add_run(first, CFG)
    assert first.claim(rid) and not second.claim(rid)
    with pytest.raises(ClaimLostError):
        second.finish(rid, {"accuracy": 0.5})
    first.close()
    second.close()


def test_stale_run_is_reclaimed_and_the_first_worker_cannot_finish(store: ResultsStore) -> None:
    rid = add_run(store, CFG)
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
    rid = add_run(store, CFG)
    store.claim(rid)
    first = store.get(rid).heartbeat_at
    with store.keep_alive(rid, every_s=0.02) as handle:
        time.sleep(0.15)
        assert store.get(rid).heartbeat_at > first and not handle.lost.is_set()
        other = ResultsStore(store.path, worker="w2")
        assert other.claim(rid, stale_after_s=0)
        assert handle.lost.wait(2)
    other.close()


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
        rid = add_run(s, CFG)
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
        rid = add_run(s, CFG)
        assert s.claim(rid, worker=f"other-{host}:{pid}/abc123{token[6:]}")
        assert not s.claim(rid)  # another machine's worker: only a stale heartbeat frees the run
        assert not s.get(rid).is_stale()
        s._conn.execute("UPDATE runs SET worker = ? WHERE run_id = ?", (gone, rid))
        assert s.get(rid).is_stale() and s.claim(rid)
