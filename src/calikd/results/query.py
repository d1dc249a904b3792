"""Queries of the results store: runs by id, prefix or name, filtered lists, counts, sweeps, CSV export.

Read transactions only (one consistent snapshot each, never blocked by a writer in WAL mode).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable
from typing import IO, Any

from calikd.errors import ConfigError, did_you_mean
from calikd.results.connection import Connection
from calikd.results.format import csv_cell, flatten
from calikd.results.records import STATUSES, RunRecord, SweepRecord
from calikd.results.schema import UnknownRunError
from calikd.utils.io import atomic_write_bytes

__all__ = ["CSV_FIELDS", "Queries", "export_csv"]

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


def _iso_utc(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Queries(Connection):
    """The reading part of :class:`calikd.results.ResultsStore`."""

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
