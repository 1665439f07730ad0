"""NvmeCache: the hot tier. Byte-identical local copies of immutable lake objects, keyed by object URI.

See the package docstring (``lakevec.cache``) for the design; ``policy`` for promotion and demotion,
``files`` for downloads and atomic publish, ``db`` for the shared metadata.
"""
from __future__ import annotations

import atexit
import errno
import logging
import operator
import os
import re
import shutil
import sqlite3
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from ..config import TABLE_NAME_PATTERN, CacheConfig, PriceTable
from ..errors import CacheError, InvalidArgumentError, LakevecError
from ..store.accounting import IOCounters
from . import policy
from .db import CacheDB
from .files import (LocalWriteError, crc_of_file, download, identity, new_temp_path, object_relpath,
                    remove_quietly)

log = logging.getLogger("lakevec.cache")

DB_NAME = "cache.db"
OBJECTS_DIR = "objects"
TMP_DIR = "tmp"
TMP_MAX_AGE = 3600.0  # temp files older than this belong to dead processes: swept
FLUSH_EVERY = 256  # buffered hit records written to the database at most this many at a time...
FLUSH_SECONDS = 2.0  # ...or this often
BYPASS_SECONDS = 10.0  # after a local write failure (disk full...), skip the cache folder this long
BYPASS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}
DISK_RESERVE = 64 << 20  # keep this much (at most 5% of the disk) free on the cache disk
LOG_EVERY = 10.0  # seconds between two warnings about local problems
WARM_THREADS = 16
HIT_FLUSH_WAIT = 0.05  # seconds a read waits for the database to record hit statistics (else later)
ADMIT_WAIT = 2.0  # seconds a miss waits for the database to admit its file (else it is not admitted)
DEFAULT_BUDGET = CacheConfig.cache_bytes
VERIFY_MODES = ("changed", "always")

_LIVE: "weakref.WeakSet[NvmeCache]" = weakref.WeakSet()
_NAME_RE = re.compile(TABLE_NAME_PATTERN)
UNASSIGNED_UNIT = ("", -1)  # (index id, partition) of rows outside any partition


def unit_of(tbl: str, index_id: str | None, partition: int) -> tuple[str, str, int]:
    """Return the cache unit of ``partition`` of index ``index_id`` of the table ``tbl`` (its root URI).

    Units are keyed by index id as well as partition number: the next index reuses the numbers for
    unrelated clusters. Partition -1 (rows outside any partition) has no index id.
    """
    partition = int(partition)
    return (tbl, "", -1) if partition < 0 else (tbl, index_id or "", partition)


def _snapshot_index_id(snap) -> str:
    return snap.index.index_id if getattr(snap, "index", None) is not None else ""


def _flush_all_at_exit() -> None:
    for c in list(_LIVE):
        c.flush()


atexit.register(_flush_all_at_exit)


class DisabledCache:
    """The cache of a lake without ``cache_dir``: reads go to the store; only the counters are kept."""

    enabled = False

    def __init__(self, counters: IOCounters | None = None, prices: PriceTable | None = None):
        self.counters = counters or IOCounters()
        self.prices = prices or PriceTable()

    def fetch(self, uri, size, store, table_key="", partition=-1, index_id=""):
        return None

    def invalidate(self, uri) -> None:
        return None

    def _no_cache(self, what: str):
        raise CacheError(f"cannot {what}: no cache is configured for this lake; connect with "
                         "cache_dir=... (command line: --cache-dir DIR or $LAKEVEC_CACHE_DIR)")

    def warm(self, table, partitions=None) -> dict:
        self._no_cache("warm the cache")

    def pin(self, table, partitions=None) -> dict:
        self._no_cache("pin partitions")

    def unpin(self, table=None, partitions=None) -> dict:
        return {"partitions": 0}

    def evict(self, table=None, partitions=None) -> dict:
        return {"files": 0, "bytes": 0}

    def clear(self) -> dict:
        return {"files": 0, "bytes": 0}

    def flush(self) -> None:
        return None

    def cached_by_partition(self, tbl: str, index_id: str = "") -> dict:
        return {}

    def partition_stats(self, tbl: str, index_id: str = "") -> dict:
        return {}

    def stats(self) -> dict:
        proc = self.counters.snapshot()
        return {"enabled": False, "cache_dir": None, "process": proc.to_dict(self.prices),
                "estimated_cost_usd": proc.cost(self.prices), "prices": asdict(self.prices)}

    def __repr__(self) -> str:
        return "DisabledCache()"


class NvmeCache:
    """A byte-budgeted cache folder shared by every process and thread that opens it.

    ``fetch`` is the read path (called by ``search.reader.FragmentReader``); ``warm``/``pin``/``unpin``/
    ``evict``/``clear`` are for operators and scheduled jobs; ``stats`` reports. No method of the read
    path fails because of the cache folder: local problems (disk full, folder deleted, database
    unreadable) make ``fetch`` return None and the reader goes to the object store.
    """

    enabled = True

    def __init__(self, cache_dir: str, budget_bytes: int, *, root: str | None = None, open_table=None,
                 counters: IOCounters | None = None, prices: PriceTable | None = None,
                 half_life: float = policy.DEFAULT_HALF_LIFE, verify: str = "changed",
                 max_object_fraction: float = policy.MAX_OBJECT_FRACTION):
        if budget_bytes is not None and (isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int)
                                         or budget_bytes < 0):
            raise InvalidArgumentError(f"cache_bytes must be a non-negative integer, got {budget_bytes!r}")
        if not isinstance(cache_dir, (str, os.PathLike)) or not str(cache_dir):
            raise InvalidArgumentError(f"cache_dir must be a folder path, got {cache_dir!r}")
        if verify not in VERIFY_MODES:
            raise InvalidArgumentError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        self.dir = os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))
        if os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise CacheError(f"cache_dir {self.dir} exists and is not a folder")
        self.budget = budget_bytes if budget_bytes is not None else DEFAULT_BUDGET
        # The cache sits under tables and never opens one itself: table names are resolved against the
        # lake root ``root`` (URI) and opened by ``open_table(name)``, both given by whoever made the cache.
        self.root = root.rstrip("/") if root else None
        self.open_table = open_table
        self.counters = counters or IOCounters()
        self.prices = prices or PriceTable()
        self.half_life = float(half_life)
        self.verify = verify
        self.max_object_fraction = max_object_fraction
        self.objects_dir = os.path.join(self.dir, OBJECTS_DIR)
        self.tmp_dir = os.path.join(self.dir, TMP_DIR)
        self.db = CacheDB(os.path.join(self.dir, DB_NAME))
        self._entries: dict[str, tuple[int, int]] = {}  # key -> (size, crc) of rows seen ready (immutable)
        self._verified: dict[str, tuple] = {}  # path -> file identity whose checksum this process verified
        self._pending: dict[tuple, list] = {}  # unit -> [accesses, hits, bytes_cache, last_time]
        self._pending_n = 0
        self._pending_t0 = time.monotonic()
        self._lock = threading.Lock()
        self._bypass_until = 0.0
        self._last_log = -LOG_EVERY
        self.errors = 0  # local problems absorbed by this process
        self.last_error: str | None = None
        try:
            self._ensure_dirs()
            self.sweep()
            if budget_bytes is None:  # e.g. the command line without --cache-bytes: the last one set
                self.budget = self.recorded_budget() or DEFAULT_BUDGET
            else:
                with self.db.txn() as c:
                    c.execute("INSERT OR REPLACE INTO info (key, value) VALUES ('budget_bytes', ?)", (str(self.budget),))
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)
        _LIVE.add(self)

    def recorded_budget(self) -> int | None:
        """Return the byte budget the last process that opened this folder with one set, or None."""
        with self.db.read() as c:
            row = c.execute("SELECT value FROM info WHERE key = 'budget_bytes'").fetchone()
        return int(row[0]) if row else None

    # -- pickling (task records may carry a cache to engine workers) ----------------------------
    def __getstate__(self):
        return {"cache_dir": self.dir, "budget": self.budget, "prices": self.prices, "half_life": self.half_life,
                "verify": self.verify, "max_object_fraction": self.max_object_fraction}

    def __setstate__(self, s):
        self.__init__(s["cache_dir"], s["budget"], prices=s["prices"], half_life=s["half_life"],
                      verify=s["verify"], max_object_fraction=s["max_object_fraction"])

    def __repr__(self) -> str:
        return f"NvmeCache({self.dir!r}, budget={self.budget})"

    # -- helpers ------------------------------------------------------------------------------------
    def _ensure_dirs(self) -> None:
        os.makedirs(self.objects_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)

    def _note_error(self, e: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:  # one line per LOG_EVERY seconds, not one per read
            self._last_log = now
            log.warning("lakevec cache %s: %s (reading from the object store instead; %d problem(s) so far)",
                        self.dir, self.last_error, self.errors)

    def _local_failure(self, e: BaseException) -> None:
        self._note_error(e)
        if _errno_of(e) in BYPASS_ERRNOS:  # disk full & co: stop trying for a while (a deleted folder
            self._bypass_until = time.monotonic() + BYPASS_SECONDS  # is simply recreated next time)
        try:
            with self.db.txn() as c:
                self.db.bump(c, write_errors=1)
        except (sqlite3.Error, OSError):
            pass

    def _disk_free(self) -> tuple[int | None, int]:
        """Return (bytes free on the cache disk, bytes to keep free), or (None, 0) if unknown."""
        try:
            st = os.statvfs(self.dir)
        except (OSError, AttributeError):
            return None, 0
        return st.f_bavail * st.f_frsize, min(DISK_RESERVE, st.f_blocks * st.f_frsize // 20)

    def path_of(self, key: str) -> str:
        """Return where the cached copy of object ``key`` lives (whether or not it is cached)."""
        return os.path.join(self.objects_dir, object_relpath(key))

    @staticmethod
    def table_id_of(uri: str, table_key: str = "") -> str:
        """Return the table root URI of a data file URI (``<table>/data.lance/data/<file>``)."""
        head, sep, _ = uri.rpartition("/data.lance/")
        return head if sep else (table_key or uri.rsplit("/", 1)[0])

    def _table_id(self, table) -> str:
        """Return the table root URI for a Table object, a table name of this lake, or a URI."""
        if hasattr(table, "loc") and hasattr(table, "data_uri"):
            return table.loc.uri
        if isinstance(table, str):
            if "/" in table or ":" in table:
                return table.rstrip("/")
            if not _NAME_RE.fullmatch(table):
                raise InvalidArgumentError(f"invalid table name {table!r}")
            return f"{self.root}/{table}" if self.root else table
        raise InvalidArgumentError(f"table must be a Table or a table name, got {type(table).__name__}")

    def _open_table(self, table):
        """Return a Table-like object (``snapshot()``, ``loc``, ``data_uri``, ``store``) for ``table``."""
        if hasattr(table, "snapshot") and hasattr(table, "data_uri"):
            return table
        if isinstance(table, str) and self.open_table is not None:
            return self.open_table(table)
        raise InvalidArgumentError(f"table must be a Table or a table name of this lake, got {table!r}")

    def _current_index(self, table) -> str:
        """Return the index id in force for ``table`` (a Table or a name; "" when it has no index)."""
        return _snapshot_index_id(self._open_table(table).snapshot())

    # -- the read path ------------------------------------------------------------------------------
    def fetch(self, uri: str, size: int, store, table_key: str = "", partition: int = -1, index_id: str = ""):
        """Return (local path, is_temp) of a verified byte-identical copy of ``uri``, or None.

        ``partition`` of the index ``index_id`` is the unit the access counts for (see ``unit_of``).

        A hit returns the cached file (is_temp False). A miss downloads the object (counted on
        ``store.counters``) and admits it per policy (is_temp False), or hands over the downloaded
        temporary file, which the caller deletes (is_temp True). None means the cache folder cannot be
        used right now (disk full, folder deleted...): the caller reads from the store itself.
        Object-store errors are raised as lakevec errors.
        """
        try:
            return self._fetch(uri, int(size or 0), store, unit_of(self.table_id_of(uri, table_key), index_id, partition))
        except LakevecError:
            raise
        except (OSError, sqlite3.Error, LocalWriteError) as e:
            self._note_error(e)
            return None

    def _fetch(self, uri, size, store, unit):
        path = self.path_of(uri)
        ent = self._lookup(uri)
        if ent is not None:
            status = self._check(path, ent)
            if status == "ok":
                self._record_hit(unit, ent[0])
                self.counters.add(cache_hits=1, cache_bytes_read=ent[0])
                return path, False
            self._drop(uri, path, status)
        self.counters.add(cache_misses=1)
        if time.monotonic() < self._bypass_until:
            return None
        try:
            self._ensure_dirs()
        except OSError as e:
            self._local_failure(e)
            return None
        free, reserve = self._disk_free()
        if free is not None and size and free < size + reserve:
            self._note_error(OSError(errno.ENOSPC, f"{free:,} bytes free on the cache disk, not enough for "
                                                   f"{size:,} bytes", self.dir))
            return None  # the disk is (nearly) full: do not even try
        tmp = new_temp_path(self.tmp_dir)
        try:
            n, crc = download(store, uri, tmp, size or None)
        except LocalWriteError as e:
            self._local_failure(e)
            return None
        try:
            admitted, _ = self._admit_and_publish(uri, unit, n, crc, tmp, path)
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)
            return (tmp, True) if os.path.exists(tmp) else None
        return (path, False) if admitted else (tmp, True)

    def invalidate(self, uri: str) -> None:
        """Drop the cached copy of ``uri`` (a reader could not use it); the next read fetches it again."""
        try:
            self._drop(uri, self.path_of(uri), "corrupt")
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)

    def _lookup(self, key: str):
        ent = self._entries.get(key)
        if ent is not None:
            return ent
        with self.db.read() as c:
            row = c.execute("SELECT size, crc FROM entries WHERE key = ? AND state = 1", (key,)).fetchone()
        if row is None or row[1] is None:
            return None
        ent = (int(row[0]), int(row[1]))
        self._entries[key] = ent
        return ent

    def _check(self, path: str, ent) -> str:
        """Return "ok", "missing" or "corrupt" for the cached file at ``path`` against (size, crc)."""
        size, crc = ent
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        if st.st_size != size:
            return "corrupt"
        ident = identity(st)
        if self.verify != "always" and self._verified.get(path) == ident:
            return "ok"
        try:
            n, c = crc_of_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        if n != size or c != crc:
            return "corrupt"
        self._verified[path] = ident
        return "ok"

    def _drop(self, key: str, path: str, reason: str) -> None:
        """Forget a cached copy that is missing or damaged (the database row and the file)."""
        self._entries.pop(key, None)
        self._verified.pop(path, None)
        with self.db.txn() as c:
            gone = c.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount
            if gone:
                self.db.bump(c, **{reason: 1})
            if reason != "missing":
                remove_quietly(path)
        if gone:
            log.warning("lakevec cache: %s copy of %s dropped; reading it again from the object store", reason, key)

    def _record_hit(self, unit, nbytes: int) -> None:
        now = time.time()
        with self._lock:
            p = self._pending.get(unit)
            if p is None:
                p = self._pending[unit] = [0, 0, 0, now]
            p[0] += 1
            p[1] += 1
            p[2] += nbytes
            p[3] = now
            self._pending_n += 1
            due = self._pending_n >= FLUSH_EVERY or time.monotonic() - self._pending_t0 > FLUSH_SECONDS
        if due:
            self.flush(timeout=HIT_FLUSH_WAIT)

    def _take_pending(self) -> dict:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._pending_n = 0
            self._pending_t0 = time.monotonic()
        return pending

    def _apply_access(self, c, unit, accesses: int, hits: int, misses: int, bytes_cache: int, bytes_store: int,
                      when: float) -> float:
        row = c.execute("SELECT lscore FROM parts WHERE tbl = ? AND idx = ? AND part = ?", unit).fetchone()
        new = policy.bump_lscore(row[0] if row else None, when, self.half_life, accesses) if accesses else (
            row[0] if row else policy.NEVER)
        c.execute(
            "INSERT INTO parts (tbl, idx, part, lscore, last_access, accesses, hits, misses, bytes_cache, bytes_store) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tbl, idx, part) DO UPDATE SET lscore = excluded.lscore, "
            "last_access = MAX(last_access, excluded.last_access), accesses = accesses + excluded.accesses, "
            "hits = hits + excluded.hits, misses = misses + excluded.misses, "
            "bytes_cache = bytes_cache + excluded.bytes_cache, bytes_store = bytes_store + excluded.bytes_store",
            (unit[0], unit[1], unit[2], new, when, accesses, hits, misses, bytes_cache, bytes_store))
        return new

    def _flush_into(self, c, pending: dict) -> None:
        for unit, (acc, hits, nbytes, when) in pending.items():
            self._apply_access(c, unit, acc, hits, 0, nbytes, 0, when)

    def flush(self, timeout: float | None = None) -> None:
        """Write the buffered access statistics of this process to the database (never raises)."""
        if not self._pending:
            return
        pending = {}
        try:
            with self.db.txn(timeout=timeout) as c:
                pending = self._take_pending()  # inside the transaction: see _admit_and_publish
                self._flush_into(c, pending)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):  # busy: keep them for the next flush
                self._restore_pending(pending)
            else:
                self._note_error(e)
        except (OSError, sqlite3.Error) as e:  # statistics are best effort
            self._note_error(e)

    def _restore_pending(self, pending: dict) -> None:
        with self._lock:
            for unit, (acc, hits, nbytes, when) in pending.items():
                p = self._pending.get(unit)
                if p is None:
                    self._pending[unit] = [acc, hits, nbytes, when]
                else:
                    p[0] += acc
                    p[1] += hits
                    p[2] += nbytes
                    p[3] = max(p[3], when)
                self._pending_n += acc

    def _admit_and_publish(self, key, unit, size, crc, tmp, path, *, force=False, protect=(), access=True,
                           miss=True):
        """In one transaction: record the access, decide admission, evict victims, publish ``tmp`` at ``path``.

        Return (admitted, victims). ``force`` admits regardless of temperature (warm/pin); ``protect``
        lists units that must not be evicted.
        """
        pending = {}
        victims_out = []
        try:
            with self.db.txn(timeout=None if force else ADMIT_WAIT) as c:
                # The time and the buffered hits are taken only once this thread holds the database, so
                # the decision sees every access recorded before it. (Taken before waiting, another
                # thread's admission could run meanwhile without the hits this one holds -- and evict a
                # hot partition as if it had been read once -- or record later times than ``now``.)
                now = time.time()
                pending = self._take_pending()
                return self._admit_locked(c, pending, key, unit, size, crc, tmp, path, now, force, protect, access,
                                          miss, victims_out)
        except BaseException as e:
            self._restore_pending(pending)  # rolled back: they go with the next transaction
            if force or not (isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))):
                raise
            return False, []  # another process holds the database: skip admission this once

    def _admit_locked(self, c, pending, key, unit, size, crc, tmp, path, now, force, protect, access, miss,
                      victims_out):
        self._flush_into(c, pending)
        if access:
            lscore = self._apply_access(c, unit, 1, 0, 1 if miss else 0, 0, size if miss else 0, now)
        else:
            row = c.execute("SELECT lscore FROM parts WHERE tbl = ? AND idx = ? AND part = ?", unit).fetchone()
            lscore = row[0] if row else policy.NEVER
        prow = c.execute("SELECT pinned FROM parts WHERE tbl = ? AND idx = ? AND part = ?", unit).fetchone()
        pinned = bool(prow and prow[0])
        if c.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
            return False, []  # another process published it meanwhile: use our copy once, as a temp file
        if size > self.budget * self.max_object_fraction and not (force and size <= self.budget):
            self.db.bump(c, rejected=1)
            return False, []
        used = c.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        need = used + size - self.budget
        free, reserve = self._disk_free()
        if free is not None:  # the budget may be larger than the disk: keep a reserve free
            need = max(need, reserve - free)
        if need > 0:
            cur = c.execute(
                "SELECT e.tbl, e.idx, e.part, SUM(e.size), MAX(COALESCE(p.lscore, ?)) FROM entries e "
                "LEFT JOIN parts p ON p.tbl = e.tbl AND p.idx = e.idx AND p.part = e.part "
                "WHERE COALESCE(p.pinned, 0) = 0 AND NOT (e.tbl = ? AND e.idx = ? AND e.part = ?) "
                "GROUP BY e.tbl, e.idx, e.part ORDER BY MAX(COALESCE(p.lscore, ?)) ASC",
                (policy.NEVER, *unit, policy.NEVER))
            units = ((t, i, p, int(b), ls) for t, i, p, b, ls in cur if (t, i, p) not in protect)
            victims, ok = policy.choose_victims(units, need, lscore, force or pinned)
            if not ok:
                self.db.bump(c, rejected=1)
                return False, []
            for vt, vi, vp, _ in victims:
                victims_out += self._delete_unit(c, vt, vi, vp)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)
        c.execute("INSERT INTO entries (key, file, size, crc, state, tbl, idx, part, kind, admitted_at, owner) "
                  "VALUES (?, ?, ?, ?, 1, ?, ?, ?, 'data', ?, ?)",
                  (key, object_relpath(key), size, crc, *unit, now, f"{os.getpid()}"))
        self.db.bump(c, admitted=1)
        try:
            self._verified[path] = identity(os.stat(path))
        except OSError:
            pass
        self._entries[key] = (size, crc)
        return True, victims_out

    def _delete_unit(self, c, tbl: str, idx: str | None, part: int | None) -> list[tuple[str, int]]:
        """Delete the rows and files of one unit (or of a whole table when ``part`` is None)."""
        if part is None:
            rows = c.execute("SELECT key, file, size FROM entries WHERE tbl = ?", (tbl,)).fetchall()
            c.execute("DELETE FROM entries WHERE tbl = ?", (tbl,))
        else:
            unit = (tbl, idx, part)
            rows = c.execute("SELECT key, file, size FROM entries WHERE tbl = ? AND idx = ? AND part = ?", unit).fetchall()
            c.execute("DELETE FROM entries WHERE tbl = ? AND idx = ? AND part = ?", unit)
        out = []
        for key, rel, size in rows:
            path = os.path.join(self.objects_dir, rel)
            remove_quietly(path)  # inside the transaction: nobody can publish this key again meanwhile
            self._entries.pop(key, None)
            self._verified.pop(path, None)
            out.append((key, int(size)))
        if rows:
            self.db.bump(c, evicted_files=len(out), evicted_bytes=sum(s for _, s in out))
        return out

    # -- explicit control -----------------------------------------------------------------------------
    def _units_of(self, snap, partitions, tbl: str):
        """Return [(partition, fragments)] to warm: the given partitions, or all (hottest first)."""
        by = dict(snap.by_partition)
        if snap.unassigned:
            by[-1] = list(snap.unassigned)
        if partitions is None:
            temps = self.partition_stats(tbl, _snapshot_index_id(snap))
            keys = sorted(by, key=lambda p: (-temps.get(p, {}).get("temperature", 0.0), p))
        else:
            keys = []
            for p in _as_list(partitions):
                nlist = snap.model.nlist if snap.model is not None else 0
                if p not in by and not (p == -1 and snap.unassigned):
                    if snap.model is None:
                        raise InvalidArgumentError("the table has no IVF index: it has no partitions to warm "
                                                   "(warm it whole with partitions=None)")
                    if not 0 <= p < nlist:
                        raise InvalidArgumentError(f"partition {p} does not exist: the index has partitions "
                                                   f"0..{nlist - 1}")
                    continue  # an empty partition: nothing to read
                if p not in keys:
                    keys.append(p)
        return [(p, by[p]) for p in keys]

    def warm(self, table, partitions=None) -> dict:
        """Download the data files of ``partitions`` of ``table`` (all by default) into the cache.

        For scheduled jobs that know what they will read. Warming admits regardless of temperature
        (evicting the coldest unpinned partitions) but stops at the byte budget: partitions that do not
        fit are listed in ``skipped``. Each warmed partition counts one access.
        """
        return self._warm(table, partitions, pin=False)

    def pin(self, table, partitions=None) -> dict:
        """Warm ``partitions`` (all by default) and keep them cached: pinned partitions are never evicted
        by the policy (only by ``evict``/``unpin``+policy/``clear``). Raises CacheError if the pinned
        bytes would exceed the budget."""
        return self._warm(table, partitions, pin=True)

    def unpin(self, table=None, partitions=None) -> dict:
        """Let the policy evict ``partitions`` of ``table`` (all pinned ones by default) again."""
        self.flush()
        units = self._explicit_units(table, partitions) if table is not None and partitions is not None else None
        with self.db.txn() as c:
            if table is None:
                n = c.execute("UPDATE parts SET pinned = 0 WHERE pinned = 1").rowcount
            elif units is None:
                n = c.execute("UPDATE parts SET pinned = 0 WHERE tbl = ? AND pinned = 1",
                              (self._table_id(table),)).rowcount
            else:
                n = sum(c.execute("UPDATE parts SET pinned = 0 WHERE tbl = ? AND idx = ? AND part = ? AND pinned = 1",
                                  u).rowcount for u in units)
        return {"partitions": n}

    def _explicit_units(self, table, partitions) -> list[tuple[str, str, int]]:
        """Return the units of ``partitions`` (numbers of the index in force) of ``table``."""
        parts = _as_list(partitions)
        if isinstance(table, str) and ("/" in table or ":" in table):
            raise InvalidArgumentError("partitions are numbers of a table's current index: pass the Table or its "
                                       f"name, not the URI {table!r}")
        tbl = self._table_id(table)
        idx = self._current_index(table)
        return [unit_of(tbl, idx, p) for p in parts]

    def _warm(self, table, partitions, pin: bool) -> dict:
        t = self._open_table(table)
        t0 = time.time()
        before = t.store.counters.snapshot()
        result = {"table": t.name, "pinned": pin, "partitions": 0, "files": 0, "files_downloaded": 0,
                  "bytes_downloaded": 0, "files_already_cached": 0, "bytes": 0, "skipped_partitions": [],
                  "uncacheable_files": 0}
        if t.store.loc.is_local:
            result["note"] = "the lake is on local disk: its files are read in place, nothing to cache"
            return result
        snap = t.snapshot()
        tbl = t.loc.uri
        idx = _snapshot_index_id(snap)
        units = self._units_of(snap, partitions, tbl)
        self.flush()
        unit_bytes = {p: sum(f.file_size for f in frs if f.single_file) for p, frs in units}
        warm_units = {unit_of(tbl, idx, p) for p, _ in units}
        with self.db.txn() as c:
            # pins of this table's earlier indexes name clusters that no longer exist: release them
            result["released_stale_pins"] = c.execute(
                "UPDATE parts SET pinned = 0 WHERE tbl = ? AND pinned = 1 AND idx NOT IN (?, '')", (tbl, idx)).rowcount
            pinned_set = {tuple(r) for r in c.execute("SELECT tbl, idx, part FROM parts WHERE pinned = 1")}
            pinned_bytes = sum(int(nb) for a, i, b, nb in c.execute(
                "SELECT e.tbl, e.idx, e.part, SUM(e.size) FROM entries e JOIN parts p "
                "ON p.tbl = e.tbl AND p.idx = e.idx AND p.part = e.part "
                "WHERE p.pinned = 1 GROUP BY e.tbl, e.idx, e.part") if (a, i, b) not in warm_units)
            if pin:
                total = pinned_bytes + sum(unit_bytes.values())
                if total > self.budget:
                    raise CacheError(f"cannot pin {len(units)} partition(s) of {t.name!r}: pinned data would take "
                                     f"{total:,} bytes, more than the cache budget of {self.budget:,} bytes "
                                     "(unpin others, pin fewer partitions or raise cache_bytes)")
                now = time.time()
                for p, _ in units:
                    c.execute("INSERT INTO parts (tbl, idx, part, lscore, last_access, pinned) VALUES (?, ?, ?, ?, ?, 1) "
                              "ON CONFLICT(tbl, idx, part) DO UPDATE SET pinned = 1",
                              (*unit_of(tbl, idx, p), policy.NEVER, now))
        # plan in order: skip partitions that cannot fit next to what is pinned and what this call warms
        room = self.budget - pinned_bytes
        plan, protect = [], set()
        for p, frs in units:
            nb = unit_bytes[p]
            if not pin and unit_of(tbl, idx, p) not in pinned_set and nb > room:
                result["skipped_partitions"].append(p)
                continue
            room -= nb
            protect.add(unit_of(tbl, idx, p))
            plan.append((p, frs))
        jobs = []
        for p, frs in plan:
            result["partitions"] += 1
            for f in frs:
                if not f.single_file:
                    result["uncacheable_files"] += 1  # read through Lance's scanner, not as a file
                    continue
                result["files"] += 1
                result["bytes"] += f.file_size
                jobs.append((f"{t.data_uri}/data/{f.file}", f.file_size, unit_of(tbl, idx, p)))

        def one(job):
            return self._warm_one(*job, t.store, protect)

        with ThreadPoolExecutor(max_workers=min(WARM_THREADS, max(1, len(jobs)))) as pool:
            outcomes = list(pool.map(one, jobs))
        for (_, size, unit), out in zip(jobs, outcomes):
            if out == "cached":
                result["files_already_cached"] += 1
            elif out == "downloaded":
                result["files_downloaded"] += 1
                result["bytes_downloaded"] += size
            elif unit[2] not in result["skipped_partitions"]:
                result["skipped_partitions"].append(unit[2])
        # one access per warmed partition
        now = time.time()
        try:
            with self.db.txn() as c:
                for p, _ in plan:
                    self._apply_access(c, unit_of(tbl, idx, p), 1, 0, 0, 0, 0, now)
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)
        io = t.store.counters.snapshot() - before
        result["skipped_partitions"] = sorted(result["skipped_partitions"])
        result["io"] = io.to_dict(self.prices)
        result["seconds"] = round(time.time() - t0, 3)
        return result

    def _warm_one(self, key, size, unit, store, protect) -> str:
        path = self.path_of(key)
        ent = self._lookup(key)
        if ent is not None:
            status = self._check(path, ent)
            if status == "ok":
                return "cached"
            self._drop(key, path, status)
        self._ensure_dirs()
        tmp = new_temp_path(self.tmp_dir)
        try:
            n, crc = download(store, key, tmp, size or None)
        except LocalWriteError as e:
            self._local_failure(e)
            raise CacheError(f"cannot write to the cache folder {self.dir}: {e}") from e
        try:
            admitted, _ = self._admit_and_publish(key, unit, n, crc, tmp, path, force=True, protect=protect,
                                                  access=False)
        finally:
            remove_quietly(tmp)  # still there when not admitted
        return "downloaded" if admitted else "skipped"

    def evict(self, table=None, partitions=None) -> dict:
        """Remove the cached files of ``partitions`` of ``table`` (all of the table; everything when
        ``table`` is None) and unpin them. Returns the files and bytes removed."""
        self.flush()
        out = []
        explicit = self._explicit_units(table, partitions) if table is not None and partitions is not None else None
        with self.db.txn() as c:
            if table is None:
                units = c.execute("SELECT DISTINCT tbl, idx, part FROM entries").fetchall()
                c.execute("UPDATE parts SET pinned = 0")
            elif explicit is None:
                tbl = self._table_id(table)
                units = [(tbl, None, None)]
                c.execute("UPDATE parts SET pinned = 0 WHERE tbl = ?", (tbl,))
            else:
                units = explicit
                for u in units:
                    c.execute("UPDATE parts SET pinned = 0 WHERE tbl = ? AND idx = ? AND part = ?", u)
            for tb, i, p in units:
                out += self._delete_unit(c, tb, i, p)
        return {"files": len(out), "bytes": sum(s for _, s in out)}

    def clear(self) -> dict:
        """Empty the cache: every file, every access statistic and pin (lifetime counters are kept)."""
        self._take_pending()
        with self.db.txn() as c:
            n, b = c.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries").fetchone()
            c.execute("DELETE FROM entries")
            c.execute("DELETE FROM parts")
            for d in (self.objects_dir, self.tmp_dir):
                shutil.rmtree(d, ignore_errors=True)
            self._ensure_dirs()
        self._entries.clear()
        self._verified.clear()
        return {"files": int(n), "bytes": int(b)}

    def sweep(self) -> dict:
        """Remove orphan files (no database row: a crash, or a deleted database) and stale temp files."""
        removed = 0
        now = time.time()
        try:
            for name in os.listdir(self.tmp_dir):
                p = os.path.join(self.tmp_dir, name)
                try:
                    if now - os.stat(p).st_mtime > TMP_MAX_AGE:
                        removed += remove_quietly(p)
                except OSError:
                    pass
        except OSError:
            pass
        with self.db.txn() as c:
            known = {r[0] for r in c.execute("SELECT file FROM entries")}
            try:
                subdirs = os.listdir(self.objects_dir)
            except OSError:
                subdirs = []
            for sub in subdirs:
                d = os.path.join(self.objects_dir, sub)
                try:
                    names = os.listdir(d)
                except OSError:
                    continue
                for name in names:
                    if f"{sub}/{name}" not in known:
                        removed += remove_quietly(os.path.join(d, name))
        return {"removed_files": removed}

    # -- reports ---------------------------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        """Return True if a ready copy of ``key`` is recorded (not checked)."""
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM entries WHERE key = ? AND state = 1", (key,)).fetchone() is not None

    def cached_by_partition(self, tbl: str, index_id: str = "") -> dict:
        """Return {partition: {key: size}} of the cached files of partitions of index ``index_id`` (and of
        partition -1) of the table ``tbl`` (root URI)."""
        out: dict[int, dict] = {}
        try:
            with self.db.read() as c:
                for key, part, size in c.execute(
                        "SELECT key, part, size FROM entries WHERE tbl = ? AND state = 1 AND "
                        "(idx = ? OR (idx = '' AND part = -1))", (tbl, index_id or "")):
                    out.setdefault(int(part), {})[key] = int(size)
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)
        return out

    def partition_stats(self, tbl: str, index_id: str = "") -> dict:
        """Return {partition: {temperature, pinned, accesses, hits, misses, bytes_cache, bytes_store, last_access}}
        of the partitions of index ``index_id`` (and partition -1) of the table ``tbl`` (root URI); units
        of other indexes of the table are not reported."""
        self.flush()
        now = time.time()
        out = {}
        try:
            with self.db.read() as c:
                for row in c.execute("SELECT part, lscore, pinned, accesses, hits, misses, bytes_cache, bytes_store, "
                                     "last_access FROM parts WHERE tbl = ? AND (idx = ? OR (idx = '' AND part = -1))",
                                     (tbl, index_id or "")):
                    part, ls, pinned, acc, hits, misses, bc, bs, last = row
                    out[int(part)] = {"temperature": round(policy.temperature(ls, now, self.half_life), 4),
                                      "pinned": bool(pinned), "accesses": acc, "hits": hits, "misses": misses,
                                      "bytes_cache": bc, "bytes_store": bs, "last_access": last}
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)
        return out

    def stats(self) -> dict:
        """Return the cache's state and counters: budget, use, per-table bytes, hits/misses, cost."""
        self.flush()
        proc = self.counters.snapshot()
        out = {"enabled": True, "cache_dir": self.dir, "budget_bytes": self.budget, "half_life_s": self.half_life,
               "verify": self.verify}
        try:
            with self.db.read() as c:
                files, used = c.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries WHERE state = 1").fetchone()
                tables = [{"table": t, "partitions": np_, "files": nf, "bytes": nb} for t, np_, nf, nb in c.execute(
                    "SELECT tbl, COUNT(DISTINCT idx || '#' || part), COUNT(*), SUM(size) FROM entries WHERE state = 1 "
                    "GROUP BY tbl ORDER BY tbl")]
                pparts, pbytes = c.execute(
                    "SELECT COUNT(DISTINCT p.tbl || '#' || p.idx || '#' || p.part), COALESCE(SUM(e.size), 0) FROM parts p "
                    "LEFT JOIN entries e ON e.tbl = p.tbl AND e.idx = p.idx AND e.part = p.part "
                    "WHERE p.pinned = 1").fetchone()
                life = c.execute("SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(misses), 0), COALESCE(SUM(bytes_cache), 0), "
                                 "COALESCE(SUM(bytes_store), 0) FROM parts").fetchone()
                counters = dict(c.execute("SELECT name, value FROM counters").fetchall())
        except (OSError, sqlite3.Error) as e:
            self._note_error(e)
            out.update({"error": self.last_error, "process": proc.to_dict(self.prices),
                        "estimated_cost_usd": proc.cost(self.prices), "prices": asdict(self.prices)})
            return out
        hits, misses = int(life[0]), int(life[1])
        out.update({
            "used_bytes": int(used), "free_bytes": max(0, self.budget - int(used)), "files": int(files),
            "partitions": sum(t["partitions"] for t in tables),
            "pinned_partitions": int(pparts or 0), "pinned_bytes": int(pbytes or 0),
            "tables": tables,
            "process": proc.to_dict(self.prices),
            "lifetime": {
                "hits": hits, "misses": misses, "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else 0.0,
                "bytes_from_cache": int(life[2]), "bytes_from_store": int(life[3]),
                **{k: int(counters.get(k, 0)) for k in ("admitted", "rejected", "evicted_files", "evicted_bytes",
                                                        "corrupt", "missing", "write_errors")},
            },
            "estimated_cost_usd": proc.cost(self.prices),
            # every hit saves the HEAD + GET a download costs
            "estimated_savings_usd": self.prices.cost(gets=2 * hits),
            "prices": asdict(self.prices),
            "local_errors": self.errors,
        })
        if self.last_error:
            out["last_error"] = self.last_error
        return out


def _errno_of(e: BaseException | None) -> int | None:
    """Return the errno of the OSError behind ``e`` (its cause chain or first argument), if any."""
    for _ in range(5):
        if e is None:
            return None
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
        nxt = e.__cause__ or e.__context__
        if nxt is None and e.args and isinstance(e.args[0], BaseException):
            nxt = e.args[0]
        e = nxt
    return None


def _as_list(partitions) -> list[int]:
    """Return ``partitions`` (an int or an iterable of ints) as a list of ints."""
    items = [partitions] if not hasattr(partitions, "__iter__") or isinstance(partitions, str) else list(partitions)
    out = []
    for p in items:
        if isinstance(p, bool):
            raise InvalidArgumentError(f"partitions must be integers, got {p!r}")
        try:
            out.append(operator.index(p))
        except TypeError:
            raise InvalidArgumentError(f"partitions must be integers, got {p!r}") from None
    return out
