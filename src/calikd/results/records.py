"""Result records: what a run and a sweep are, and writing them (register, add a sweep, finish a run).

:class:`RunRecord` and :class:`SweepRecord` are what the queries (:mod:`calikd.results.query`) read back.
:meth:`Records.finish` ends a lease of :mod:`calikd.results.leases` by writing the run's results.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from calikd.errors import ConfigError
from calikd.results.format import canonical_json, metric_value, plain
from calikd.results.leases import DEFAULT_STALE_AFTER_S, Leases
from calikd.utils.process import worker_is_gone

__all__ = ["STATUSES", "Records", "RunRecord", "SweepRecord"]

STATUSES = ("pending", "running", "finished", "failed")


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


def _check_name(value: Any, what: str, *, optional: bool = False) -> None:
    """Refuse (ConfigError) a ``value`` that is not a non-empty string (None passes when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")


class Records(Leases):
    """The writing part of :class:`calikd.results.ResultsStore`: sweeps, runs and their results."""

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

    def retain_sweep_runs(self, name: str, run_ids: Iterable[str]) -> int:
        """Make ``run_ids`` the only runs of sweep ``name`` that stay in it: runs an earlier spec of the
        sweep linked and this one no longer plans leave the sweep (they stay in the store, with any other
        sweep they belong to). Returns how many left."""
        keep = set(run_ids)
        with self._write() as conn:
            linked = [r[0] for r in conn.execute("SELECT run_id FROM sweep_runs WHERE sweep = ?", (name,))]
            stale = [(name, run_id) for run_id in linked if run_id not in keep]
            conn.executemany("DELETE FROM sweep_runs WHERE sweep = ? AND run_id = ?", stale)
        return len(stale)

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
