"""The cache's metadata: a small SQLite database in WAL mode, shared by every process using the folder.

Tables:

``entries``   one row per cached object: key (object URI), file (relative path), size, crc (CRC-32 of
              the bytes, recorded at admission), state (0 = reserved while a download is in flight,
              1 = ready), its unit (table, index id, partition), kind ("data"), admitted_at.
``parts``     access statistics per unit (table, index id, partition), cached or not ("ghost" entries let a
              partition that keeps coming back win admission): lscore (the decayed access score in log
              form, see ``policy``), last_access, accesses, hits, misses, bytes_cache, bytes_store, pinned.
              The index id is "" for the pseudo-partition -1 (rows outside any partition).
``counters``  cache-wide event totals (admitted, rejected, evicted_files, evicted_bytes, corrupt,
              missing, write_errors).

Every change is one ``BEGIN IMMEDIATE`` transaction, so admission (read the used bytes, choose victims,
reserve) is atomic across processes. ``synchronous=NORMAL``: a power loss may lose the last
transactions, never corrupt the database; a lost row at worst leaves an orphan file, which the next
``sweep`` removes, and a stale row points at a file whose size/checksum check fails.

The connection notices a deleted or replaced database file (the cache folder was removed) and
reconnects, recreating the schema. A database of an older schema (version 1: units keyed by table and
partition only) is emptied and recreated: it is a cache; its files become orphans that ``sweep`` removes.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    crc INTEGER,
    state INTEGER NOT NULL DEFAULT 0,
    tbl TEXT NOT NULL,
    idx TEXT NOT NULL DEFAULT '',
    part INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'data',
    admitted_at REAL NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS entries_unit ON entries (tbl, idx, part);
CREATE TABLE IF NOT EXISTS parts (
    tbl TEXT NOT NULL,
    idx TEXT NOT NULL DEFAULT '',
    part INTEGER NOT NULL,
    lscore REAL NOT NULL,
    last_access REAL NOT NULL,
    accesses INTEGER NOT NULL DEFAULT 0,
    hits INTEGER NOT NULL DEFAULT 0,
    misses INTEGER NOT NULL DEFAULT 0,
    bytes_cache INTEGER NOT NULL DEFAULT 0,
    bytes_store INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tbl, idx, part)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _migrate(conn: sqlite3.Connection) -> None:
    """Drop the entries and statistics of a database of an older schema (the schema is then recreated)."""
    has_info = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'info'").fetchone()
    if not has_info:
        return
    row = conn.execute("SELECT value FROM info WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM info WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:  # another process may have migrated meanwhile
            conn.execute("DROP TABLE IF EXISTS entries")
            conn.execute("DROP TABLE IF EXISTS parts")
            for stmt in _SCHEMA.split(";"):  # recreated in the same transaction: no one sees no tables
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT OR REPLACE INTO info (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class CacheDB:
    """One process's connection to the cache database (thread-safe; reconnects after fork or deletion)."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._ident = None
        self._pid = os.getpid()
        self._lock = threading.RLock()

    def _file_ident(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _connect(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked child must not use its parent's connection
            self._conn = None
            self._pid = os.getpid()
            self._lock = threading.RLock()
        ident = self._file_ident()
        if self._conn is not None and ident is not None and ident == self._ident:
            return self._conn
        self.close()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(conn)
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO info (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._ident = self._file_ident()
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    @contextmanager
    def txn(self, write: bool = True, timeout: float | None = None):
        """Yield a connection inside one transaction (IMMEDIATE when writing); commit or roll back.

        ``timeout``: seconds to wait for another process's write transaction (default: the
        connection's); sqlite3.OperationalError ("database is locked") when it does not end in time.
        """
        with self._lock:
            for attempt in range(2):
                conn = self._connect()
                try:
                    conn.execute(f"PRAGMA busy_timeout={int((self.timeout if timeout is None else timeout) * 1000)}")
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" in str(e) or "busy" in str(e):
                        raise  # another process holds the write lock longer than we wait
                    # e.g. "attempt to write a readonly database" after the file was deleted: reconnect once
                    self.close()
                    if attempt:
                        raise
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

    @contextmanager
    def read(self):
        """Yield a connection for reads (autocommit; each statement sees a consistent snapshot)."""
        with self._lock:
            yield self._connect()

    # -- counters ------------------------------------------------------------------------------
    @staticmethod
    def bump(conn: sqlite3.Connection, **kw: int) -> None:
        for name, value in kw.items():
            if value:
                conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                             "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, int(value)))
