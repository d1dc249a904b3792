"""The results store of calikd sweeps: every run recorded in one embedded SQLite file.

Default file ``runs/calikd.db`` (:data:`DEFAULT_DB_PATH`); only the standard library's :mod:`sqlite3`.
It records each run's config, input hashes, status, timings, metrics and artifact paths, so that

* a sweep interrupted and restarted skips the runs already finished (:meth:`ResultsStore.claim` says
  False for them);
* several sweep processes, on one machine or on several sharing the file over a local filesystem, can
  work through one sweep at once: a run is claimed atomically by one worker, and nothing is lost;
* results are queryable with SQL (``sqlite3 runs/calikd.db "SELECT * FROM run_metrics"``), listed with
  ``calikd runs list|show`` and exported with ``calikd runs export --csv``.

Life of a run::

    store = ResultsStore("runs/calikd.db")
    run_id = run_id_for(config)                     # stable hash of the canonical config JSON
    store.register(run_id, sweep="s1", kind="distill", name="r20-cnn-kd", config=config)
    if store.claim(run_id):                         # False: finished, or a live worker runs it
        try:
            with store.keep_alive(run_id):          # heartbeat from a background thread
                metrics = train(config)
        except KeyboardInterrupt:
            store.release(run_id)                   # back to pending: not a failure
            raise
        except Exception as exc:
            store.fail(run_id, repr(exc))
            raise
        store.finish(run_id, metrics, {"best": "runs/x/best.safetensors"}, out_dir="runs/x")

Statuses: ``pending`` -> ``running`` -> ``finished`` | ``failed``. :meth:`~ResultsStore.claim` takes a
pending or failed run, or a running one whose heartbeat is older than ``stale_after_s`` (its worker
died: SIGKILL, power loss, a lost node); it never takes a finished run. A run whose worker was a process
of this machine that no longer exists (:func:`worker_is_gone`) is taken over at once, so a sweep killed
and restarted goes on without waiting for the heartbeat to go stale. A worker whose claim was taken over
that way cannot finish the run any more (:class:`ClaimLostError`), so every run is finished once.

Concurrency: the file is in WAL mode (readers never block the writer), every write is one short
``BEGIN IMMEDIATE`` transaction, and writers wait for each other (``busy_timeout``) instead of failing
with "database is locked". Use one :class:`ResultsStore` per process (or per thread); a store used after
``fork`` reconnects by itself. WAL needs a local filesystem: SQLite warns that it is unsafe over NFS.
Staleness compares wall clocks of different workers, so keep their clocks in sync (NTP).

Metric values are floats; ``None``, NaN and +-inf are stored as SQL NULL and read back as ``None``
("undefined", e.g. the NLL of a diverged run). Anything that is not a real number (a string, a bool,
a list) is refused with :class:`calikd.errors.ConfigError`.

Schema (version 1; table ``schema_version`` holds it, and a file of a newer version is refused)::

    sweeps      sweep TEXT PK, spec TEXT (JSON, NULL until add_sweep), created_at REAL, updated_at REAL
    runs        run_id TEXT PK            16 hex digits of SHA-256 of the canonical config JSON
                sweep TEXT                the sweep that registered it first (NULL: a stand-alone run)
                kind TEXT                 'teacher' | 'calibrate' | 'distill' | ...
                name TEXT                 human-readable run name
                status TEXT               'pending' | 'running' | 'finished' | 'failed'
                config TEXT               canonical JSON of the config (sorted keys)
                hashes TEXT               JSON object: teacher checkpoint id, data hash, ...
                out_dir TEXT              the run's output folder
                created_at, started_at, finished_at, heartbeat_at REAL   Unix time (seconds, UTC)
                worker TEXT               'host:pid/token' of the worker that claimed it last
                attempts INTEGER          how many times it was claimed
                error TEXT                the last failure (NULL unless failed)
                wall_time_s REAL          seconds from claim to finish / fail
    sweep_runs  sweep TEXT, run_id TEXT; PK (sweep, run_id)   every sweep a run belongs to
    metrics     run_id TEXT, name TEXT, value REAL (NULL: undefined); PK (run_id, name)
    artifacts   run_id TEXT, name TEXT, path TEXT; PK (run_id, name)
    run_metrics VIEW (run_id, sweep, kind, name, status, metric, value)

``metrics``, ``artifacts`` and ``sweep_runs`` rows are deleted with their run (``ON DELETE CASCADE``).
The SQL is :data:`calikd.store.results_schema.SCHEMA_SQL`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from calikd.errors import CalikdError, ConfigError, did_you_mean
from calikd.store.results_format import canonical_json, csv_cell, flatten, metric_value, plain, run_id_for
from calikd.store.results_schema import (
    SCHEMA_VERSION,
    ResultsStoreError,
    is_file_error,
    open_database,
    retry_busy,
    store_error,
)
from calikd.utils.io import atomic_write_bytes
from calikd.utils.process import PID_NAMESPACE_TAG as _PID_NAMESPACE_TAG
from calikd.utils.process import default_worker, worker_is_gone

__all__ = [
    "DEFAULT_DB_PATH",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_STALE_AFTER_S",
    "SCHEMA_VERSION",
    "STATUSES",
    "ClaimLostError",
    "KeepAlive",
    "ResultsStore",
    "ResultsStoreError",
    "RunRecord",
    "SweepRecord",
    "UnknownRunError",
    "default_worker",
    "export_csv",
    "run_id_for",
    "worker_is_gone",
]

DEFAULT_DB_PATH = "runs/calikd.db"
STATUSES = ("pending", "running", "finished", "failed")
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_STALE_AFTER_S = 300.0  # ten missed heartbeats of keep_alive
MAX_ERROR_CHARS = 20_000
CSV_FIELDS = (
    "run_id",
    "sweep",
    "kind",
    "name",
    "status",
    "attempts",
    "worker",
    "out_dir",
    "created_at",
    "started_at",
    "finished_at",
    "wall_time_s",
    "error",
)
_RUN_COLUMNS = (
    "run_id, sweep, kind, name, status, config, hashes, out_dir, created_at, started_at, finished_at, "
    "heartbeat_at, worker, attempts, error, wall_time_s"
)


class UnknownRunError(ResultsStoreError, KeyError):
    """No run has this id, id prefix or name (or a prefix matches several runs)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return CalikdError.__str__(self)


class ClaimLostError(ResultsStoreError):
    """This worker no longer holds the run: another worker reclaimed it after its heartbeat went stale."""


def _iso_utc(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass(frozen=True)
class RunRecord:
    """One run as stored: JSON columns parsed, with its metrics, artifacts and sweeps."""

    run_id: str
    sweep: str | None
    kind: str
    name: str
    status: str
    config: dict[str, Any]
    hashes: dict[str, Any]
    out_dir: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    worker: str | None
    attempts: int
    error: str | None
    wall_time_s: float | None
    metrics: dict[str, float | None] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    sweeps: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        """The first 8 characters of the run id, as ``calikd runs list`` shows them."""
        return self.run_id[:8]

    def is_stale(self, stale_after_s: float = DEFAULT_STALE_AFTER_S, now: float | None = None) -> bool:
        """True for a running run whose heartbeat is older than ``stale_after_s`` (its worker likely died)
        or whose worker was a process of this machine that no longer exists (:func:`worker_is_gone`)."""
        if self.status != "running":
            return False
        now = time.time() if now is None else now
        stale = self.heartbeat_at is None or now - self.heartbeat_at >= stale_after_s
        return stale or worker_is_gone(self.worker)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as Unix seconds, sweeps as a list)."""
        out = asdict(self)
        out["sweeps"] = list(self.sweeps)
        return out


@dataclass(frozen=True)
class SweepRecord:
    """A sweep: its spec (None until :meth:`ResultsStore.add_sweep`) and its runs counted by status."""

    name: str
    spec: Any
    created_at: float
    updated_at: float
    counts: dict[str, int] = field(default_factory=dict)


class KeepAlive:
    """Handle of :meth:`ResultsStore.keep_alive`: ``lost`` is set once another worker took the run over."""

    def __init__(self) -> None:
        self.lost = threading.Event()


def _check_name(value: Any, what: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")


class ResultsStore:
    """The SQLite results database at ``path`` (see the module docstring for the schema and the protocol).

    Args:
        path: the database file; its folder and the schema are created on first use unless ``create``
            is False, in which case a missing file raises :class:`ResultsStoreError` (as the CLI wants).
        worker: who claims runs; default ``host:pid/token`` (:func:`default_worker` plus a random token
            of this store object, so that two stores in one process, e.g. one per thread, or two
            containers with the same host name and pid, never pass for one worker; in a container the
            token ends with ``@<PID namespace>``, see :func:`worker_is_gone`).
        busy_timeout_s: how long a write waits for other writers before giving up.

    Raises :class:`ResultsStoreError` (a :class:`calikd.errors.CalikdError`, naming the file) for a file
    that is not SQLite, is corrupt, is another program's database or has a newer schema version.
    One connection per store object and per process; not thread-safe (open one store per thread).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_DB_PATH,
        *,
        create: bool = True,
        worker: str | None = None,
        busy_timeout_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_s = float(busy_timeout_s)
        self._worker = worker
        self._token = secrets.token_hex(3) + _PID_NAMESPACE_TAG
        self._claims: dict[str, str] = {}
        self._conn_obj: sqlite3.Connection | None = open_database(
            self.path, create=create, busy_timeout_s=self.busy_timeout_s
        )
        self._pid = os.getpid()

    # -- connection and transactions ------------------------------------------------------------------

    @property
    def worker(self) -> str:
        """The worker name used by :meth:`claim` when none is given."""
        return self._worker or f"{default_worker()}/{self._token}"

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._conn_obj is not None and self._pid != os.getpid():
            self._conn_obj = None  # forked: never use the parent's connection (nor close it)
            self._claims.clear()
        if self._conn_obj is None:
            self._conn_obj = open_database(self.path, create=False, busy_timeout_s=self.busy_timeout_s)
            self._pid = os.getpid()
        return self._conn_obj

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        if self._conn_obj is not None and self._pid == os.getpid():
            self._conn_obj.close()
        self._conn_obj = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            retry_busy(lambda: conn.execute(begin), self.busy_timeout_s)
        except sqlite3.DatabaseError as exc:
            if not is_file_error(exc):
                raise
            raise store_error(self.path, exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and is_file_error(exc):
                raise store_error(self.path, exc) from exc
            raise

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction: takes the write lock at once, so it never fails half-way on a lock."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read transaction: one consistent snapshot, never blocked by writers (WAL)."""
        return self._transaction("BEGIN")

    def _owned(self, conn: sqlite3.Connection, run_id: str) -> tuple[str, str | None, str, float | None]:
        """(status, holder, this worker, started_at) of ``run_id``; raises for an unknown id."""
        row = conn.execute(
            "SELECT status, worker, started_at FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise UnknownRunError(f"no run '{run_id}' in '{self.path}'", hint="register() it first")
        return row[0], row[1], self._claims.get(run_id, self.worker), row[2]

    # -- sweeps --------------------------------------------------------------------------------------

    def add_sweep(self, name: str, spec: Mapping[str, Any] | None = None) -> bool:
        """Record sweep ``name`` with its ``spec`` (JSON-able; replaces an older spec). True if new."""
        _check_name(name, "a sweep name")
        spec_json = None if spec is None else canonical_json(spec, "sweep spec")
        now = time.time()
        with self._write() as conn:
            new = conn.execute("SELECT 1 FROM sweeps WHERE sweep = ?", (name,)).fetchone() is None
            conn.execute(
                "INSERT INTO sweeps (sweep, spec, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (sweep) DO UPDATE SET spec = coalesce(excluded.spec, spec), "
                "updated_at = excluded.updated_at",
                (name, spec_json, now, now),
            )
        return new

    def sweeps(self) -> list[SweepRecord]:
        """Every sweep, oldest first, with its runs counted by status."""
        with self._read() as conn:
            rows = conn.execute("SELECT sweep, spec, created_at, updated_at FROM sweeps").fetchall()
            counts = conn.execute(
                "SELECT s.sweep, r.status, count(*) FROM sweep_runs AS s "
                "JOIN runs AS r ON r.run_id = s.run_id GROUP BY s.sweep, r.status"
            ).fetchall()
        by_sweep: dict[str, dict[str, int]] = {}
        for sweep, status, n in counts:
            by_sweep.setdefault(sweep, {})[status] = n
        records = [
            SweepRecord(
                name, None if spec is None else json.loads(spec), created, updated, by_sweep.get(name, {})
            )
            for name, spec, created, updated in rows
        ]
        return sorted(records, key=lambda s: (s.created_at, s.name))

    # -- the life of a run ---------------------------------------------------------------------------

    def register(
        self,
        run_id: str,
        *,
        sweep: str | None,
        kind: str,
        name: str,
        config: Mapping[str, Any],
        hashes: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a pending run (idempotent); True if it was new, False if it was already there.

        A run already there keeps its status, results, kind and name; it is added to ``sweep`` too. New
        ``hashes`` are merged in, but a finished or running run whose recorded hashes differ raises
        :class:`ConfigError` (its results came from other inputs), as does the same id with another config.
        """
        _check_name(run_id, "a run id")
        if any(c.isspace() for c in run_id):
            raise ConfigError(f"a run id must not contain white space, got {run_id!r}")
        _check_name(sweep, "a sweep name", optional=True)
        _check_name(kind, "a run kind")
        _check_name(name, "a run name")
        config_json = canonical_json(config)
        new_hashes = plain(dict(hashes or {}), "hashes")
        now = time.time()
        with self._write() as conn:
            if sweep is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO sweeps (sweep, spec, created_at, updated_at) "
                    "VALUES (?, NULL, ?, ?)",
                    (sweep, now, now),
                )
            row = conn.execute(
                "SELECT config, hashes, status FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO runs (run_id, sweep, kind, name, status, config, hashes, created_at) "
                    "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                    (run_id, sweep, kind, name, config_json, canonical_json(new_hashes, "hashes"), now),
                )
            else:
                self._check_same_run(run_id, row, config_json, new_hashes)
                merged = {**json.loads(row[1]), **new_hashes}
                conn.execute(
                    "UPDATE runs SET hashes = ? WHERE run_id = ?", (canonical_json(merged, "hashes"), run_id)
                )
            if sweep is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO sweep_runs (sweep, run_id) VALUES (?, ?)", (sweep, run_id)
                )
        return row is None

    def _check_same_run(self, run_id: str, row: tuple[Any, ...], config_json: str, hashes: dict) -> None:
        old_config, old_hashes, status = row[0], json.loads(row[1]), row[2]
        if old_config != config_json:
            raise ConfigError(
                f"run id '{run_id}' is already recorded in '{self.path}' with another config",
                hint="derive run ids with run_id_for(config) so that a config always has its own id",
            )
        changed = sorted(k for k in hashes if k in old_hashes and old_hashes[k] != hashes[k])
        if changed and status in ("running", "finished"):
            what = ", ".join(f"{k}: {old_hashes[k]!r} -> {hashes[k]!r}" for k in changed)
            raise ConfigError(
                f"run '{run_id}' is {status} with other inputs ({what})",
                hint="its results would be stale: put these hashes into the run's config so that the "
                "new inputs make a new run, or use another --db",
            )

    def claim(
        self,
        run_id: str,
        worker: str | None = None,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        retry_failed: bool = True,
    ) -> bool:
        """Atomically mark the run as running for ``worker`` (default :attr:`worker`); True if claimed.

        Claims a pending run, a failed one (unless ``retry_failed`` is False) and a running one whose
        heartbeat is older than ``stale_after_s`` seconds, whose worker process is gone
        (:func:`worker_is_gone`) or that this same worker holds. Returns False for a finished run and for
        one that another live worker holds.
        """
        worker = worker or self.worker
        now = time.time()
        with self._write() as conn:
            status, holder, _, _ = self._owned(conn, run_id)
            beat = conn.execute("SELECT heartbeat_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            if status == "finished" or (status == "failed" and not retry_failed):
                return False
            fresh = beat is not None and now - beat < stale_after_s
            if status == "running" and holder != worker and fresh and not worker_is_gone(holder):
                return False
            conn.execute(
                "UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ?, "
                "finished_at = NULL, error = NULL, wall_time_s = NULL, attempts = attempts + 1 "
                "WHERE run_id = ?",
                (worker, now, now, run_id),
            )
        self._claims[run_id] = worker
        return True

    def heartbeat(self, run_id: str) -> bool:
        """Refresh the heartbeat of a run this worker holds; False if it no longer holds it."""
        worker = self._claims.get(run_id, self.worker)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running' AND worker = ?",
                (time.time(), run_id, worker),
            )
        return cur.rowcount == 1

    @contextlib.contextmanager
    def keep_alive(self, run_id: str, every_s: float = DEFAULT_HEARTBEAT_S) -> Iterator[KeepAlive]:
        """Heartbeat ``run_id`` every ``every_s`` seconds from a background thread while the block runs.

        The thread has its own connection. If another worker takes the run over, ``handle.lost`` is set
        and the beats stop; the block is not interrupted (check ``handle.lost.is_set()`` between epochs).
        """
        worker = self._claims.get(run_id, self.worker)
        handle, stop = KeepAlive(), threading.Event()

        def beat() -> None:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None)
            try:
                while not stop.wait(every_s):
                    try:
                        cur = conn.execute(
                            "UPDATE runs SET heartbeat_at = ? "
                            "WHERE run_id = ? AND status = 'running' AND worker = ?",
                            (time.time(), run_id, worker),
                        )
                    except sqlite3.OperationalError:
                        continue  # busy for longer than busy_timeout: try again at the next beat
                    if cur.rowcount != 1:
                        handle.lost.set()
                        return
            finally:
                conn.close()

        thread = threading.Thread(target=beat, name=f"calikd-heartbeat-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield handle
        finally:
            stop.set()
            thread.join()

    def finish(
        self,
        run_id: str,
        metrics: Mapping[str, Any],
        artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
        *,
        out_dir: str | os.PathLike[str] | None = None,
        wall_time_s: float | None = None,
        hashes: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> None:
        """Record the run as finished, in one transaction: status, timings, metrics and artifacts.

        ``metrics`` and ``artifacts`` replace those stored before; ``hashes`` are merged into the run's
        (e.g. the id of the checkpoint it produced); ``wall_time_s`` defaults to the time since
        :meth:`claim`. Raises :class:`ClaimLostError` unless this worker holds the run (``force``
        records it anyway, e.g. to import results computed elsewhere).
        """
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"metrics must be a mapping of name -> number, got {type(metrics).__name__}")
        values = {name: metric_value(name, value) for name, value in metrics.items()}
        paths: dict[str, str] = {}
        for name, path in (artifacts or {}).items():
            _check_name(name, "an artifact name")
            paths[name] = os.fspath(path)
        extra_hashes = plain(dict(hashes or {}), "hashes")
        now = time.time()
        with self._write() as conn:
            status, holder, worker, started = self._owned(conn, run_id)
            if not force and (status != "running" or holder != worker):
                raise self._lost(run_id, status, holder, worker)
            if wall_time_s is None and status == "running" and started is not None:
                wall_time_s = now - started
            old_hashes = json.loads(
                conn.execute("SELECT hashes FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
            )
            conn.execute(
                "UPDATE runs SET status = 'finished', finished_at = ?, heartbeat_at = ?, wall_time_s = ?, "
                "error = NULL, out_dir = coalesce(?, out_dir), hashes = ? WHERE run_id = ?",
                (
                    now,
                    now,
                    None if wall_time_s is None else float(wall_time_s),
                    None if out_dir is None else os.fspath(out_dir),
                    canonical_json({**old_hashes, **extra_hashes}, "hashes"),
                    run_id,
                ),
            )
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            conn.executemany(
                "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in values.items()],
            )
            conn.execute("DELETE FROM artifacts WHERE run_id = ?", (run_id,))
            conn.executemany(
                "INSERT INTO artifacts (run_id, name, path) VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in paths.items()],
            )
        self._claims.pop(run_id, None)

    def fail(self, run_id: str, error: str) -> bool:
        """Record the run as failed with ``error`` (kept to its last 20,000 characters).

        Returns False, writing nothing, if this worker no longer holds the run (so that a handler in an
        ``except`` block never hides the original exception).
        """
        text = str(error)[-MAX_ERROR_CHARS:]
        now = time.time()
        with self._write() as conn:
            status, holder, worker, started = self._owned(conn, run_id)
            if status != "running" or holder != worker:
                return False
            conn.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished_at = ?, heartbeat_at = ?, "
                "wall_time_s = ? WHERE run_id = ?",
                (text, now, now, None if started is None else now - started, run_id),
            )
        self._claims.pop(run_id, None)
        return True

    def release(self, run_id: str) -> bool:
        """Give a run this worker holds back as pending (an interrupted, not a failed run); True if so."""
        with self._write() as conn:
            status, holder, worker, _ = self._owned(conn, run_id)
            if status != "running" or holder != worker:
                return False
            conn.execute(
                "UPDATE runs SET status = 'pending', heartbeat_at = NULL WHERE run_id = ?",
                (run_id,),
            )
        self._claims.pop(run_id, None)
        return True

    def _lost(self, run_id: str, status: str, holder: str | None, worker: str) -> ClaimLostError:
        if status == "running":
            return ClaimLostError(
                f"run '{run_id}' is now held by {holder}, not by {worker}: it was reclaimed after its "
                "heartbeat went stale",
                hint="keep the heartbeat fresh with ResultsStore.keep_alive(), or raise stale_after_s",
            )
        return ClaimLostError(
            f"run '{run_id}' is {status}, not running for {worker}",
            hint="claim() the run before finishing it",
        )

    # -- reading ---------------------------------------------------------------------------------------

    def resolve(self, query: str) -> str:
        """The full run id for a run id, a unique prefix of one (as git), or a unique run name."""
        if not isinstance(query, str) or not query.strip():
            raise UnknownRunError("an empty run id", hint="`calikd runs list` shows the run ids")
        q = query.strip()
        with self._read() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY run_id LIMIT 6",
                    (len(q), q),
                )
            ]
            named = [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE name = ? LIMIT 6", (q,))]
            if q in ids:
                return q
            if len(ids) == 1:
                return ids[0]
            if len(ids) > 1:
                width = max(len(q) + 2, 8)
                shown = ", ".join(i[:width] for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
                raise UnknownRunError(f"run id prefix '{q}' is ambiguous: {shown}", hint="give more digits")
            if len(named) == 1:
                return named[0]
            if len(named) > 1:
                shown = ", ".join(i[:8] for i in named[:5])
                raise UnknownRunError(f"several runs are named '{q}': {shown}", hint="give the run id")
            rows = conn.execute("SELECT run_id, name FROM runs").fetchall()
        choices = {rid[: max(len(q), 4)] for rid, _ in rows} | {name for _, name in rows}
        raise UnknownRunError(
            f"no run '{q}' in '{self.path}'{did_you_mean(q, choices)}",
            hint="`calikd runs list` shows the run ids",
        )

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, unique id prefix or unique name (:class:`UnknownRunError` otherwise)."""
        full = self.resolve(run_id)
        return self._records("WHERE r.run_id = ?", (full,))[0]

    def list_runs(
        self, sweep: str | None = None, status: str | None = None, kind: str | None = None
    ) -> list[RunRecord]:
        """Runs, oldest first, filtered by sweep (any sweep they belong to), status and kind."""
        where, params = [], []
        if status is not None:
            if status not in STATUSES:
                raise ConfigError(
                    f"unknown run status '{status}'{did_you_mean(status, STATUSES)}",
                    hint=f"one of: {', '.join(STATUSES)}",
                )
            where.append("r.status = ?")
            params.append(status)
        if kind is not None:
            where.append("r.kind = ?")
            params.append(kind)
        if sweep is not None:
            names = [s.name for s in self.sweeps()]
            if sweep not in names:
                raise ConfigError(
                    f"no sweep '{sweep}' in '{self.path}'{did_you_mean(sweep, names)}",
                    hint=f"sweeps: {', '.join(names) or '(none yet)'}",
                )
            where.append("r.run_id IN (SELECT run_id FROM sweep_runs WHERE sweep = ?)")
            params.append(sweep)
        return self._records("WHERE " + " AND ".join(where) if where else "", tuple(params))

    def status_counts(self, sweep: str | None = None) -> dict[str, int]:
        """How many runs (of ``sweep``, or all) are in each status; every status is a key."""
        sql, params = "SELECT status, count(*) FROM runs", ()
        if sweep is not None:
            sql, params = sql + " WHERE run_id IN (SELECT run_id FROM sweep_runs WHERE sweep = ?)", (sweep,)
        with self._read() as conn:
            rows = conn.execute(sql + " GROUP BY status", params).fetchall()
        return {s: 0 for s in STATUSES} | dict(rows)

    def metric_names(self) -> list[str]:
        """Every metric name recorded for any run, sorted."""
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT name FROM metrics ORDER BY name")]

    def _records(self, where: str, params: tuple[Any, ...]) -> list[RunRecord]:
        subquery = f"SELECT r.run_id FROM runs AS r {where}"
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs AS r {where} ORDER BY r.created_at, r.run_id", params
            ).fetchall()
            metrics: dict[str, dict[str, float | None]] = {}
            for rid, name, value in conn.execute(
                f"SELECT run_id, name, value FROM metrics WHERE run_id IN ({subquery}) ORDER BY run_id, name",
                params,
            ):
                metrics.setdefault(rid, {})[name] = value
            artifacts: dict[str, dict[str, str]] = {}
            for rid, name, path in conn.execute(
                f"SELECT run_id, name, path FROM artifacts WHERE run_id IN ({subquery}) "
                "ORDER BY run_id, name",
                params,
            ):
                artifacts.setdefault(rid, {})[name] = path
            sweeps: dict[str, list[str]] = {}
            for rid, sweep in conn.execute(
                f"SELECT run_id, sweep FROM sweep_runs WHERE run_id IN ({subquery}) ORDER BY run_id, sweep",
                params,
            ):
                sweeps.setdefault(rid, []).append(sweep)
        records = []
        for row in rows:
            values = dict(zip(_RUN_COLUMNS.split(", "), row, strict=True))
            values["config"] = json.loads(values["config"])
            values["hashes"] = json.loads(values["hashes"])
            rid = values["run_id"]
            records.append(
                RunRecord(
                    **values,
                    metrics=metrics.get(rid, {}),
                    artifacts=artifacts.get(rid, {}),
                    sweeps=tuple(sweeps.get(rid, ())),
                )
            )
        return records

    # -- export ----------------------------------------------------------------------------------------

    def export_csv(
        self, path_or_file: str | os.PathLike[str] | IO[str], runs: Iterable[RunRecord] | None = None
    ) -> int:
        """Write ``runs`` (default: all) as CSV; returns how many rows were written.

        Columns: the run's fields (:data:`CSV_FIELDS`; times as ISO-8601 UTC), then one column per
        flattened config key (``config.a.b``), per hash (``hashes.k``) and per metric (``metrics.m``),
        each sorted; empty cells for missing values. A path is written atomically (UTF-8).
        """
        return export_csv(path_or_file, self.list_runs() if runs is None else runs)


def export_csv(path_or_file: str | os.PathLike[str] | IO[str], runs: Iterable[RunRecord]) -> int:
    """:meth:`ResultsStore.export_csv` for records already read."""
    runs = list(runs)
    configs = [flatten(r.config) for r in runs]
    config_keys = sorted({k for c in configs for k in c})
    hash_keys = sorted({k for r in runs for k in r.hashes})
    metric_keys = sorted({k for r in runs for k in r.metrics})
    header = [
        *CSV_FIELDS,
        *(f"config.{k}" for k in config_keys),
        *(f"hashes.{k}" for k in hash_keys),
        *(f"metrics.{k}" for k in metric_keys),
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for run, config in zip(runs, configs, strict=True):
        fields = run.to_dict()
        for key in ("created_at", "started_at", "finished_at"):
            fields[key] = _iso_utc(fields[key])
        row = [fields[k] for k in CSV_FIELDS]
        row += [config.get(k) for k in config_keys]
        row += [run.hashes.get(k) for k in hash_keys]
        row += [run.metrics.get(k) for k in metric_keys]
        writer.writerow([csv_cell(v) for v in row])
    if hasattr(path_or_file, "write"):
        path_or_file.write(buffer.getvalue())  # type: ignore[union-attr]
    else:
        atomic_write_bytes(path_or_file, buffer.getvalue().encode("utf-8"))  # type: ignore[arg-type]
    return len(runs)
