"""The results database's tables and opening it: file checks, pragmas, schema creation, migrations.

The schema is documented in :mod:`calikd.results`; its SQL lives here (:data:`SCHEMA_SQL`), with the
errors of the store. Only the standard library's :mod:`sqlite3` is used.
"""

from __future__ import annotations

import random
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from calikd.errors import CalikdError

__all__ = [
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "SQLITE_HEADER",
    "ResultsStoreError",
    "UnknownRunError",
    "is_file_error",
    "open_database",
    "retry_busy",
    "store_error",
]

SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"
T = TypeVar("T")

SCHEMA_SQL = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE sweeps (
    sweep      TEXT PRIMARY KEY,
    spec       TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    sweep        TEXT REFERENCES sweeps(sweep) ON DELETE SET NULL,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    config       TEXT NOT NULL,
    hashes       TEXT NOT NULL DEFAULT '{}',
    out_dir      TEXT,
    created_at   REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    heartbeat_at REAL,
    worker       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    wall_time_s  REAL
);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_kind ON runs(kind);
CREATE TABLE sweep_runs (
    sweep  TEXT NOT NULL REFERENCES sweeps(sweep) ON DELETE CASCADE,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    PRIMARY KEY (sweep, run_id)
) WITHOUT ROWID;
CREATE INDEX sweep_runs_run ON sweep_runs(run_id);
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    path   TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE VIEW run_metrics AS
    SELECT r.run_id, r.sweep, r.kind, r.name, r.status, m.name AS metric, m.value
    FROM runs AS r JOIN metrics AS m ON m.run_id = r.run_id;
"""

# Upgrades from version N to N + 1, applied in order inside one transaction (none yet).
MIGRATIONS: dict[int, str] = {}


class ResultsStoreError(CalikdError):
    """The results database is missing, not SQLite, corrupt or of a newer schema; or a run is unknown."""


class UnknownRunError(ResultsStoreError, KeyError):
    """No run has this id, id prefix or name (or a prefix matches several runs)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return CalikdError.__str__(self)


def store_error(path: Path, exc: sqlite3.DatabaseError) -> ResultsStoreError:
    """A :class:`ResultsStoreError` naming ``path`` for an SQLite error that is the file's fault."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return ResultsStoreError(
            f"results database '{path}' stayed locked: {text}",
            hint="another process holds a long write transaction on it; try again, or raise busy_timeout_s",
        )
    if "readonly" in text or "unable to open" in text:
        return ResultsStoreError(
            f"cannot write the results database '{path}': {text}",
            hint="check the permissions of the file and of its folder",
        )
    return ResultsStoreError(
        f"'{path}' is not a usable calikd results database: {text}",
        hint="it is corrupt or not an SQLite file; move it away (calikd then starts a new one) "
        "or pass another --db",
    )


def is_file_error(exc: BaseException) -> bool:
    """True for SQLite errors caused by the file (corrupt, locked, read-only), not by a bug in the SQL."""
    return type(exc) in (sqlite3.DatabaseError, sqlite3.OperationalError) and "syntax error" not in str(exc)


def retry_busy(fn: Callable[[], T], timeout_s: float) -> T:
    """Call ``fn`` until it does not fail with SQLITE_BUSY / 'database is locked', for up to ``timeout_s``.

    SQLite's busy handler covers most waits, but a few steps (switching the journal mode, a schema
    creation race) can answer BUSY at once; these are retried here with a short random back-off.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _check_file(path: Path, create: bool) -> None:
    if path.is_dir():
        raise ResultsStoreError(
            f"'{path}' is a folder, not a results database",
            hint="pass the database file, e.g. runs/calikd.db",
        )
    if path.exists():
        try:
            with path.open("rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise ResultsStoreError(
                f"cannot read the results database '{path}': {exc.strerror or exc}"
            ) from exc
        if head and head != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise ResultsStoreError(
                f"'{path}' is not a calikd results database (not an SQLite file)",
                hint="pass another --db, or move the file away",
            )
        return
    if not create:
        raise ResultsStoreError(
            f"no results database at '{path}'",
            hint="`calikd sweep FILE.yaml` creates it; pass --db PATH to read another one",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsStoreError(
            f"cannot create the folder of the results database '{path}': {exc.strerror or exc}"
        ) from exc


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')").fetchall()
    return {r[0] for r in rows if not r[0].startswith("sqlite_")}


def _schema_version(conn: sqlite3.Connection, path: Path, create: bool) -> int | None:
    """The stored schema version; None for an empty database. Refuses foreign and newer databases."""
    tables = _tables(conn)
    if "schema_version" not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5])
            raise ResultsStoreError(
                f"'{path}' is an SQLite database but not a calikd results database (tables: {shown})",
                hint="pass another --db",
            )
        if not create:
            raise ResultsStoreError(
                f"'{path}' is an empty database, not a calikd results database",
                hint="`calikd sweep FILE.yaml` creates one; pass --db PATH to read another one",
            )
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    version = row[0] if row else None
    if not isinstance(version, int):
        raise ResultsStoreError(
            f"'{path}' has no valid schema version", hint="the file is damaged; move it away"
        )
    if version > SCHEMA_VERSION:
        raise ResultsStoreError(
            f"'{path}' was written by a newer calikd (schema version {version}; this calikd reads up to "
            f"{SCHEMA_VERSION})",
            hint="upgrade calikd (pip install -U calikd), or pass another --db",
        )
    return version


def _create_or_upgrade(conn: sqlite3.Connection, path: Path, create: bool) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(conn, path, create)  # again: another process may have created it
        if version is None:
            for statement in SCHEMA_SQL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise ResultsStoreError(
                        f"'{path}' has schema version {version}, which this calikd cannot upgrade",
                        hint="export it with an older calikd (`calikd runs export --csv`), then start "
                        "a new one",
                    )
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
                conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_database(path: Path, *, create: bool, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (and with ``create`` make) the results database at ``path``; see :class:`ResultsStore`."""
    _check_file(path, create)
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise store_error(path, exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        version = retry_busy(lambda: _schema_version(conn, path, create), busy_timeout_s)
        # WAL: readers never block the writer, and a crash never leaves a half-written transaction.
        mode = retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0], busy_timeout_s)
        if str(mode).lower() != "wal":
            warnings.warn(
                f"results database '{path}': WAL journal mode unavailable (got {mode!r}; a network "
                "filesystem?); concurrent sweep processes may wait longer",
                RuntimeWarning,
                stacklevel=3,
            )
        if version != SCHEMA_VERSION:
            retry_busy(lambda: _create_or_upgrade(conn, path, create), busy_timeout_s)
    except ResultsStoreError:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        if not is_file_error(exc):
            raise
        raise store_error(path, exc) from exc
    return conn
