"""One process's connection to the results database and its short read / write transactions.

The base of :class:`calikd.results.ResultsStore`: the leases, records and queries parts all talk to
SQLite through :meth:`Connection._read` and :meth:`Connection._write`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from calikd.results.schema import is_file_error, open_database, retry_busy, store_error

__all__ = ["Connection"]


class Connection:
    """The SQLite connection of one store object in one process; reopened by itself after ``fork``.

    Args:
        path: the database file (see :func:`calikd.results.schema.open_database` for ``create``).
        busy_timeout_s: how long a write waits for other writers before giving up.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool, busy_timeout_s: float) -> None:
        self.path = Path(path)
        self.busy_timeout_s = float(busy_timeout_s)
        self._conn_obj: sqlite3.Connection | None = open_database(
            self.path, create=create, busy_timeout_s=self.busy_timeout_s
        )
        self._pid = os.getpid()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._conn_obj is not None and self._pid != os.getpid():
            self._conn_obj = None  # forked: never use the parent's connection (nor close it)
            self._forked()
        if self._conn_obj is None:
            self._conn_obj = open_database(self.path, create=False, busy_timeout_s=self.busy_timeout_s)
            self._pid = os.getpid()
        return self._conn_obj

    def _forked(self) -> None:
        """Drop the state that belonged to the parent process (called once in a forked child)."""

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        if self._conn_obj is not None and self._pid == os.getpid():
            self._conn_obj.close()
        self._conn_obj = None

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
