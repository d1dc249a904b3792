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
The SQL is :data:`calikd.results.schema.SCHEMA_SQL`.

Modules: :mod:`~calikd.results.schema` (tables, migrations, opening the file),
:mod:`~calikd.results.connection` (the connection and its transactions), :mod:`~calikd.results.leases`
(the job queue: claims, heartbeats, worker liveness), :mod:`~calikd.results.records` (runs, sweeps and
their results: the records and writing them), :mod:`~calikd.results.query` (reading, CSV export),
:mod:`~calikd.results.format` (canonical JSON, run ids, metric values) and
:mod:`~calikd.results.store` (:class:`ResultsStore`, composed of those parts).
"""

from calikd.results.format import run_id_for
from calikd.results.leases import DEFAULT_HEARTBEAT_S, DEFAULT_STALE_AFTER_S, ClaimLostError, KeepAlive
from calikd.results.query import CSV_FIELDS, export_csv
from calikd.results.records import STATUSES, RunRecord, SweepRecord
from calikd.results.schema import SCHEMA_VERSION, ResultsStoreError, UnknownRunError
from calikd.results.store import DEFAULT_DB_PATH, ResultsStore
from calikd.utils.process import default_worker, worker_is_gone

__all__ = [
    "CSV_FIELDS",
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
