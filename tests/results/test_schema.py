"""The results database file: schema, pragmas, and bad files refused by name."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from calikd.results import (
    SCHEMA_VERSION,
    ResultsStore,
    ResultsStoreError,
)


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


def test_the_results_store_imports_no_torch() -> None:
    """Sweep workers and the crash tests import it in fresh processes: it needs only the standard library."""
    heavy = "('torch', 'numpy', 'calikd.store')"
    code = f"import sys, calikd.results; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
