"""The lakevec state of one table version, and how a reader rebuilds it from O(1) objects.

What lakevec knows about a version besides Lance's own manifest:

- the **index in force** (its ``IndexMeta``, and the version that put it in force);
- the **partition map**: data file name -> (index id, partition), for the files written clustered;
- the **id runs**: one sorted id file per commit that added rows (``ids/<txn>.npy``), with min/max, so an
  append reads only the runs its ids can overlap (``lakevec.commit.ids``);
- the **idempotency keys** and **source-file identities** committed, each with the version that did;
- the **quarantine files** (``rejects/<txn>.parquet``) committed with their ingestions.

Objects (under ``<table>/_lakevec/``)::

    commits/<txn>.json           commit record: what one commit changes, written BEFORE its Lance commit
    checkpoints/<version>.json   the whole state at a version (written by a later writer, every
                                 CHECKPOINT_EVERY lakevec commits)

Every lakevec commit carries ``lakevec.txn = <txn>`` in its Lance transaction properties (and uses the
txn as the Lance transaction uuid). So the commit record is atomic with the data: a record whose
commit never happened is referenced by no version (vacuum removes it); a version's record is found
from the version itself (one read of its Lance transaction), never by listing.

A record names the checkpoint its writer started from and the chain of records after it (at most
CHECKPOINT_EVERY), so a cold reader of version v reads: v's transaction, v's record, one checkpoint
and the chained records: O(1) objects however long the history is. A writer that finds the chain
full writes the checkpoint of its parent version first (deterministic content, conditional create).

Gaps: a record states the parent version its writer validated against. Lance may still put the
commit later (it rebases appends on concurrent commits); the versions in between are then replayed
from their own records (their transactions name them). Versions committed by other Lance writers
(no ``lakevec.txn``) change no lakevec state; files they add are unassigned, files they remove drop
out of the map when the snapshot is filtered by the version's real file list.

Reading never writes, and a record or checkpoint that a committed version references but that cannot
be read is an error, never taken as "absent".
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from .config import META_DIR
from .errors import IndexError_, LakevecError, StorageError
from .metadata import IndexMeta

TXN_PROPERTY = "lakevec.txn"
OP_PROPERTY = "lakevec.op"
FORMAT = 2
CHECKPOINT_EVERY = 8  # lakevec commits between checkpoints: a cold open reads <= this many records
COMMITS_DIR = "commits"
CHECKPOINTS_DIR = "checkpoints"
IDS_DIR = "ids"
REJECTS_DIR = "rejects"


@dataclass(frozen=True)
class IdRun:
    """The ids one commit added: a sorted array in ``<table>/_lakevec/<path>``, with its bounds."""

    path: str  # relative to _lakevec/, e.g. "ids/<txn>.npy"
    count: int
    lo: object  # smallest id (int, or str for string ids)
    hi: object  # largest id
    id_type: str = "int64"  # "int64" | "string" (string runs hold sorted 64-bit hashes)

    def to_json(self) -> dict:
        return {"path": self.path, "count": self.count, "lo": self.lo, "hi": self.hi, "id_type": self.id_type}

    @classmethod
    def from_json(cls, d: dict) -> "IdRun":
        return cls(d["path"], int(d["count"]), d["lo"], d["hi"], d.get("id_type", "int64"))

    def overlaps(self, lo, hi) -> bool:
        return not (hi < self.lo or lo > self.hi)


@dataclass
class TableState:
    """lakevec's knowledge of one table version (see the module docstring)."""

    version: int
    index: IndexMeta | None = None
    index_version: int | None = None  # the version whose commit put the index in force
    files: dict = field(default_factory=dict)  # data file -> (index id, partition)
    runs: dict = field(default_factory=dict)  # run path -> IdRun
    keys: dict = field(default_factory=dict)  # idempotency key -> version that committed it
    sources: dict = field(default_factory=dict)  # source identity hash -> version that committed it
    rejects: list = field(default_factory=list)  # rejects files (relative to _lakevec/)
    checkpoint: int | None = None  # version of the checkpoint this state was rebuilt from
    chain: list = field(default_factory=list)  # [(version, txn)] of lakevec records after the checkpoint
    txn: str | None = None  # the lakevec txn of this version's own commit (None: not a lakevec commit)

    @property
    def index_id(self) -> str | None:
        return self.index.index_id if self.index is not None else None

    def partition_of(self, data_file: str) -> int | None:
        """Return the partition of ``data_file`` under the index in force, or None (unassigned)."""
        hit = self.files.get(data_file)
        if hit is None or self.index is None or hit[0] != self.index.index_id:
            return None
        return hit[1]

    def next_chain(self) -> tuple[int | None, list]:
        """Return (checkpoint, chain) for the record of a commit whose parent is this version."""
        chain = list(self.chain)
        if self.txn is not None:
            chain.append((self.version, self.txn))
        return self.checkpoint, chain

    def copy(self) -> "TableState":
        return TableState(self.version, self.index, self.index_version, dict(self.files), dict(self.runs),
                          dict(self.keys), dict(self.sources), list(self.rejects), self.checkpoint,
                          list(self.chain), self.txn)

    # -- serialisation (checkpoints) ---------------------------------------------------------
    def to_json(self) -> dict:
        by_index: dict[str, dict] = {}
        for f, (iid, p) in self.files.items():
            by_index.setdefault(iid, {})[f] = int(p)
        return {"format": FORMAT, "version": self.version,
                "index": self.index.to_json() if self.index is not None else None,
                "index_version": self.index_version, "files": by_index,
                "runs": [r.to_json() for r in self.runs.values()], "keys": self.keys, "sources": self.sources,
                "rejects": self.rejects}

    @classmethod
    def from_json(cls, d: dict) -> "TableState":
        files = {f: (iid, int(p)) for iid, m in (d.get("files") or {}).items() for f, p in m.items()}
        runs = {r["path"]: IdRun.from_json(r) for r in d.get("runs") or []}
        idx = IndexMeta.from_json(d["index"]) if d.get("index") else None
        return cls(int(d["version"]), idx, d.get("index_version"), files, runs,
                   {k: int(v) for k, v in (d.get("keys") or {}).items()},
                   {k: int(v) for k, v in (d.get("sources") or {}).items()}, list(d.get("rejects") or []),
                   checkpoint=int(d["version"]), chain=[])


def apply_record(state: TableState, rec: dict, version: int) -> TableState:
    """Return the state after the commit described by record ``rec`` landed as ``version``."""
    s = state.copy()
    d = rec.get("delta") or {}
    if d.get("index"):
        s.index = IndexMeta.from_json(d["index"])
        s.index_version = version
    for f in d.get("removed") or ():
        s.files.pop(f, None)
    for iid, m in (d.get("files") or {}).items():
        for f, p in m.items():
            s.files[f] = (iid, int(p))
    for path in d.get("runs_removed") or ():
        s.runs.pop(path, None)
    for r in d.get("runs_added") or ():
        run = IdRun.from_json(r)
        s.runs[run.path] = run
    for k in d.get("keys") or ():
        s.keys.setdefault(k, version)
    for h in d.get("sources") or ():
        s.sources.setdefault(h, version)
    s.rejects += [r for r in d.get("rejects") or () if r not in s.rejects]
    s.version = version
    s.txn = rec["txn"]
    return s


def txn_of(ds, version: int | None = None) -> str | None:
    """Return the lakevec txn that committed ``version`` (default: the dataset's), or None."""
    from .store.lance_io import read_transaction
    v = ds.version if version is None else version
    try:
        t = read_transaction(ds, v)
    except Exception as e:
        from .store.objects import wrap_io_error
        raise wrap_io_error(e, f"reading the transaction of version {v} of {ds.uri}") from e
    if t is None:
        return None
    return (t.transaction_properties or {}).get(TXN_PROPERTY)


class StateReader:
    """Rebuilds ``TableState`` of any version of one table; caches immutable objects and recent states."""

    KEEP_RECORDS = 4096  # immutable records kept in memory (a long-lived process sees many commits)
    KEEP_CHECKPOINTS = 4

    def __init__(self, store, table_loc, keep_states: int = 4):
        self.store = store
        self.loc = table_loc
        self._records: "OrderedDict[str, dict]" = OrderedDict()
        self._checkpoints: "OrderedDict[int, TableState]" = OrderedDict()
        self._states: "OrderedDict[int, TableState]" = OrderedDict()
        self._keep = keep_states
        self._lock = threading.Lock()

    def uri(self, *parts: str) -> str:
        return self.loc.join(META_DIR, *parts)

    # -- immutable objects ---------------------------------------------------------------------
    def record(self, txn: str) -> dict:
        """Return the commit record of ``txn`` (it must exist: a committed version references it)."""
        with self._lock:
            hit = self._records.get(txn)
        if hit is not None:
            return hit
        uri = self.uri(COMMITS_DIR, f"{txn}.json")
        try:
            rec = self.store.read_json(uri)
        except StorageError as e:
            raise IndexError_(f"the commit record {uri} of a committed version of table {self.loc.uri} cannot "
                              f"be read: {e}") from e
        self.remember_record(rec)
        return rec

    def remember_record(self, rec: dict) -> None:
        with self._lock:
            self._records[rec["txn"]] = rec
            while len(self._records) > self.KEEP_RECORDS:
                self._records.popitem(last=False)

    def checkpoint(self, version: int) -> TableState:
        with self._lock:
            hit = self._checkpoints.get(version)
        if hit is not None:
            return hit
        uri = self.uri(CHECKPOINTS_DIR, f"{version:012d}.json")
        try:
            st = TableState.from_json(self.store.read_json(uri))
        except StorageError as e:
            raise IndexError_(f"the checkpoint {uri} of table {self.loc.uri} cannot be read: {e}") from e
        self._keep_checkpoint(version, st)
        return st

    def _keep_checkpoint(self, version: int, st: TableState) -> None:
        with self._lock:
            self._checkpoints[version] = st
            while len(self._checkpoints) > self.KEEP_CHECKPOINTS:
                self._checkpoints.popitem(last=False)

    def has_checkpoint(self, version: int) -> bool:
        """True if this process knows the checkpoint of ``version`` exists (read or written here)."""
        with self._lock:
            return version in self._checkpoints

    def remember_checkpoint(self, state: TableState) -> None:
        st = state.copy()
        st.checkpoint, st.chain = st.version, []
        self._keep_checkpoint(state.version, st)

    # -- states ----------------------------------------------------------------------------------
    def cached(self, version: int) -> TableState | None:
        with self._lock:
            st = self._states.get(version)
            if st is not None:
                self._states.move_to_end(version)
            return st

    def remember(self, state: TableState) -> None:
        with self._lock:
            self._states[state.version] = state
            self._states.move_to_end(state.version)
            while len(self._states) > self._keep:
                self._states.popitem(last=False)

    def state_at(self, ds, version: int | None = None) -> TableState:
        """Return the state of ``version`` (default: the dataset's) of the Lance dataset ``ds``."""
        v = ds.version if version is None else version
        hit = self.cached(v)
        if hit is not None:
            return hit
        st = self._build(ds, v)
        self.remember(st)
        return st

    def _build(self, ds, v: int) -> TableState:
        # Walk back over versions without a lakevec record (the empty first version, other Lance writers).
        foreign = 0
        u = v
        txn = None
        while u >= 1:
            hit = self.cached(u)
            if hit is not None:
                return self._relabel(hit, v)
            txn = txn_of(ds, u)
            if txn is not None:
                break
            u -= 1
            foreign += 1
            if foreign > 10000:  # pragma: no cover - a table written by something else entirely
                break
        if txn is None:
            return TableState(v)
        rec = self.record(txn)
        if rec.get("format", FORMAT) > FORMAT:
            raise IndexError_(f"version {u} of table {self.loc.uri} was written by a newer lakevec "
                              f"(record format {rec.get('format')}); upgrade lakevec")
        parent = int(rec["parent"])
        self._prefetch(rec)
        base = self.checkpoint(int(rec["checkpoint"])) if rec.get("checkpoint") is not None else TableState(1)
        st = base
        for pv, ptxn in rec.get("chain") or ():
            st = apply_record(st, self.record(ptxn), int(pv))
        # versions Lance put between the writer's parent and this commit (a rebased commit)
        for gv in range(parent + 1, u):
            gtxn = txn_of(ds, gv)
            if gtxn is not None:
                st = apply_record(st, self.record(gtxn), gv)
        st = apply_record(st, rec, u)
        st.checkpoint = rec.get("checkpoint")
        st.chain = [tuple(x) for x in rec.get("chain") or ()]
        if u != parent + 1:  # the chain of a gap commit: every lakevec record since the checkpoint
            st.chain += [(gv, t) for gv in range(parent + 1, u) if (t := txn_of(ds, gv)) is not None]
        st.txn = txn
        return self._relabel(st, v)

    def _prefetch(self, rec: dict) -> None:
        """Read the checkpoint and the chained records a record names, in parallel (a cold open then costs a
        few round trips, not one per record)."""
        jobs = [("r", t) for _, t in rec.get("chain") or () if t not in self._records]
        if rec.get("checkpoint") is not None and int(rec["checkpoint"]) not in self._checkpoints:
            jobs.append(("c", int(rec["checkpoint"])))
        if len(jobs) < 2:
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(8, len(jobs)), thread_name_prefix="lakevec-state") as pool:
            futs = [pool.submit(self.record if kind == "r" else self.checkpoint, x) for kind, x in jobs]
            for f in futs:
                f.result()

    @staticmethod
    def _relabel(st: TableState, v: int) -> TableState:
        if st.version == v:
            return st
        out = st.copy()
        if out.txn is not None:  # the lakevec commit is an ancestor: it goes into the chain of v
            out.chain.append((out.version, out.txn))
        out.version, out.txn = v, None
        return out


def wrap_state_error(e: BaseException, what: str) -> LakevecError:
    """Turn an unexpected failure while rebuilding a state into a LakevecError."""
    if isinstance(e, LakevecError):
        return e
    from .store.objects import wrap_io_error
    return wrap_io_error(e, what)


__all__ = ["IdRun", "TableState", "StateReader", "apply_record", "txn_of", "TXN_PROPERTY", "OP_PROPERTY",
           "CHECKPOINT_EVERY", "COMMITS_DIR", "CHECKPOINTS_DIR", "IDS_DIR", "REJECTS_DIR"]
