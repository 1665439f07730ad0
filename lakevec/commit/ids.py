"""The id index: one sorted run of ids per commit, so an append reads only the runs its ids can overlap.

Every commit that adds rows writes ``_lakevec/ids/<txn>.npy`` before its Lance commit: the sorted,
unique ids it added (int64), or for string ids their sorted 64-bit hashes. The lakevec state lists
every run with its row count and smallest/largest id (``state.IdRun``). Checking new ids against the
table then means: keep the runs whose [lo, hi] range intersects the new ids' range, read only those,
and look the ids up with binary search. Appends of increasing ids (sequence numbers, timestamps,
dated keys: the usual ETL case) read no run at all, whatever the table's size; random ids read the
runs they overlap (8 bytes per row), never the table's data files. ``compact`` merges runs.

String ids are compared by their 64-bit FNV-1a hash (a collision, about n^2 / 2^64, would reject a new id as a
duplicate: a false "already in the table", never a double row); their runs keep the smallest and
largest string for range pruning.
"""
from __future__ import annotations

import io
import threading

import numpy as np

from ..arrays import unique
from ..config import META_DIR
from ..errors import IndexError_, StorageError
from ..state import IDS_DIR, IdRun

MAX_BOUND_CHARS = 64  # string ranges are kept to this many characters (rounded outwards)


def hash_strings(ids) -> np.ndarray:
    """Return uint64 hashes of string ids: FNV-1a 64 over their UTF-8 bytes, vectorised with numpy (one pass per
    byte position), identical in every process and independent of the other ids in the array."""
    arr = np.asarray(ids, dtype=object)
    if not len(arr):
        return np.empty(0, dtype=np.uint64)
    raw = np.char.encode(arr.astype(str), "utf-8")  # fixed-width bytes, zero padded
    lengths = np.char.str_len(raw)
    width = raw.dtype.itemsize
    mat = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(len(raw), width)
    h = np.full(len(raw), _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):
            live = lengths > j  # bytes past a string's own end (padding) do not enter its hash
            nh = (h ^ mat[:, j].astype(np.uint64)) * _FNV_PRIME
            h = np.where(live, nh, h)
    return h


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def id_keys(ids, id_type: str) -> np.ndarray:
    """Return the sortable keys of ``ids`` stored in runs: int64 ids, or uint64 hashes of strings."""
    if id_type == "int64":
        return np.asarray(ids, dtype=np.int64)
    return hash_strings(ids)


def bounds(ids, id_type: str):
    """Return (lo, hi) of ``ids`` as stored in a run's metadata (strings rounded outwards)."""
    if id_type == "int64":
        a = np.asarray(ids, dtype=np.int64)
        return int(a.min()), int(a.max())
    lo, hi = min(ids), max(ids)
    if len(lo) > MAX_BOUND_CHARS:
        lo = lo[:MAX_BOUND_CHARS]  # a prefix sorts before the string: still a lower bound
    if len(hi) > MAX_BOUND_CHARS:
        hi = hi[:MAX_BOUND_CHARS] + "\U0010ffff"  # sorts after every string with that prefix
    return lo, hi


def run_path(txn: str, part: int | None = None) -> str:
    """The path (relative to _lakevec/) of a commit's id run."""
    return f"{IDS_DIR}/{txn}.npy" if part is None else f"{IDS_DIR}/{txn}-{part}.npy"


def write_run(store, table_loc, path: str, ids, id_type: str) -> IdRun | None:
    """Write the sorted unique keys of ``ids`` as the run at ``path``; return its IdRun (None if no ids)."""
    if ids is None or not len(ids):
        return None
    keys = unique(id_keys(ids, id_type))
    lo, hi = bounds(ids, id_type)
    buf = io.BytesIO()
    np.save(buf, keys, allow_pickle=False)
    store.write_bytes(table_loc.join(META_DIR, path), buf.getvalue())
    return IdRun(path, int(len(keys)), lo, hi, id_type)


def merge_runs(store, table_loc, runs: list[IdRun], path: str) -> IdRun | None:
    """Write one run holding the keys of ``runs`` (compaction); return it."""
    if not runs:
        return None
    reader = RunReader(store, table_loc)
    keys = unique(np.concatenate([reader.keys(r) for r in runs]))
    buf = io.BytesIO()
    np.save(buf, keys, allow_pickle=False)
    store.write_bytes(table_loc.join(META_DIR, path), buf.getvalue())
    kind = runs[0].id_type
    return IdRun(path, int(len(keys)), min(r.lo for r in runs), max(r.hi for r in runs), kind)


class RunReader:
    """Reads run files (immutable; kept in memory once read) and counts what it read."""

    def __init__(self, store, table_loc):
        self.store = store
        self.loc = table_loc
        self._keys: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.runs_read = 0
        self.bytes_read = 0

    def keys(self, run: IdRun) -> np.ndarray:
        with self._lock:
            hit = self._keys.get(run.path)
        if hit is not None:
            return hit
        uri = self.loc.join(META_DIR, run.path)
        try:
            raw = self.store.read_bytes(uri)
        except StorageError as e:
            raise IndexError_(f"the id run {uri} of table {self.loc.uri} cannot be read: {e}") from e
        keys = np.load(io.BytesIO(raw), allow_pickle=False)
        with self._lock:
            self._keys[run.path] = keys
            self.runs_read += 1
            self.bytes_read += len(raw)
        return keys


def _member(keys: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    if not len(sorted_ref) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    pos = np.searchsorted(sorted_ref, keys)
    pos[pos == len(sorted_ref)] = 0
    return sorted_ref[pos] == keys


class IdIndex:
    """Answers "which of these ids are already in the table?" reading only the runs they can overlap.

    ``runs``: the IdRuns of the version read (``TableState.runs``). Thread-safe; run files are read once.
    """

    def __init__(self, store, table_loc, runs, id_type: str, reader: RunReader | None = None):
        self.runs = list(runs.values()) if isinstance(runs, dict) else list(runs)
        self.id_type = id_type
        self.reader = reader or RunReader(store, table_loc)

    def __len__(self) -> int:
        return sum(r.count for r in self.runs)

    def candidates(self, lo, hi) -> list[IdRun]:
        return [r for r in self.runs if r.overlaps(lo, hi)]

    def contains(self, ids) -> np.ndarray:
        """Return a bool mask: which ``ids`` (non-null) some run holds."""
        n = len(ids)
        if not n or not self.runs:
            return np.zeros(n, dtype=bool)
        lo, hi = bounds(ids, self.id_type)
        cand = self.candidates(lo, hi)
        if not cand:
            return np.zeros(n, dtype=bool)
        keys = id_keys(ids, self.id_type)
        found = np.zeros(n, dtype=bool)
        for r in cand:
            found |= _member(keys, self.reader.keys(r))
        return found

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    @property
    def runs_read(self) -> int:
        return self.reader.runs_read


def overlap(keys_a: np.ndarray, keys_b: np.ndarray) -> np.ndarray:
    """Return the keys of sorted ``keys_a`` that are also in sorted ``keys_b``."""
    return keys_a[_member(keys_a, keys_b)]
