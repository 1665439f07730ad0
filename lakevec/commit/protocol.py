"""The one commit protocol of every writer: ingestion, index builds, compaction, quarantine, join outputs.

A writer hands ``commit`` a ``Change``: the Lance operation (Append, Rewrite, Merge for a schema,
Delete) over the files its tasks wrote, what lakevec must know about them (partition of every new
file, the index it puts in force, its id run, idempotency key, source files, quarantine file), and
the ``TableState`` of the version it read. ``commit``:

1. **Re-validates** against every commit since that version (their records): an idempotency key or a
   source file committed meanwhile -> ``AlreadyCommitted`` (the caller reports "skipped"); an id committed
   meanwhile -> ``ValidationError`` naming it; a schema change under an append -> ``CommitConflictError``.
   Nothing is committed in these cases.
2. Writes the **commit record** (``state``: its delta, its parent version, checkpoint and chain), and the
   checkpoint of the parent when the chain is full, before the Lance commit that makes it reachable.
3. **Commits once** to Lance with ``read_version`` = the version it validated, the txn as Lance
   transaction uuid and ``lakevec.txn`` in the transaction properties. A concurrent commit that won the
   version (Lance's conflict error) sends it back to step 1 (bounded attempts with backoff).
4. **"Not sure whether it landed"** (a timeout, the store going away, an interrupt after Lance returned):
   it re-opens the table and looks for its txn in the versions after its parent. Found: committed. Not
   found or the store unreachable: it raises, and the error says the outcome is unknown. Files are
   deleted by callers only when ``not_committed(error)`` is true: a definite "nothing was committed".
5. **Gaps.** Lance re-bases an append on a commit that landed between step 1 and its own write; the
   commit then has version > parent + 1. The versions in between are checked like in step 1; if one of
   them committed the same ids, key or source files, this commit is compensated at once by a Delete of
   its duplicate rows (the earlier commit wins, so each id is kept once). This window is milliseconds.

``read_version`` semantics, idempotency and atomicity of the lakevec state: see ``lakevec.state``.
"""
from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass, field

import lance
import numpy as np

from ..arrays import unique
from ..config import ID_COLUMN, META_DIR
from ..errors import CommitConflictError, LakevecError, StorageError, ValidationError
from ..metadata import IndexMeta
from ..state import (
    CHECKPOINT_EVERY,
    CHECKPOINTS_DIR,
    COMMITS_DIR,
    FORMAT,
    OP_PROPERTY,
    TXN_PROPERTY,
    IdRun,
    TableState,
    apply_record,
    txn_of,
)
from ..store.lance_io import file_path, open_dataset
from ..store.objects import clean_error_text, wrap_io_error
from .ids import RunReader, overlap

log = logging.getLogger("lakevec.commit")

MAX_ATTEMPTS = 40
BACKOFF_START = 0.02
BACKOFF_MAX = 1.0


def new_txn() -> str:
    """A fresh transaction id (also the Lance transaction uuid and the name of the commit's objects)."""
    return str(uuid.uuid4())


class AlreadyCommitted(LakevecError):
    """The change's idempotency key or source files were committed by another run (nothing committed)."""

    def __init__(self, message: str, version: int, keys=(), sources=()):
        super().__init__(message)
        self.version = version
        self.keys = list(keys)
        self.sources = list(sources)


def not_committed(e: BaseException) -> bool:
    """True if ``e`` is known to have left nothing committed (so the job's files may be deleted)."""
    return bool(getattr(e, "lakevec_not_committed", False))


def _mark_not_committed(e: BaseException) -> BaseException:
    try:
        e.lakevec_not_committed = True  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - exceptions without a __dict__
        pass
    return e


@dataclass
class Change:
    """What one writer commits (see the module docstring). Build with keyword arguments."""

    op: str  # "append" | "schema" | "index" | "compact" | "delete" | ...
    operation: object  # a lance.LanceOperation
    txn: str = field(default_factory=new_txn)
    files: dict = field(default_factory=dict)  # new data file -> partition (-1: unassigned)
    index_id: str | None = None  # the index the files' partitions refer to
    index: IndexMeta | None = None  # the index this change puts in force (index builds)
    removed: list = field(default_factory=list)  # data files no longer referenced
    runs_added: list = field(default_factory=list)  # IdRun
    runs_removed: list = field(default_factory=list)  # run paths
    new_keys: np.ndarray | None = None  # the id keys added (sorted, unique), for re-validation
    keys: list = field(default_factory=list)  # idempotency keys
    sources: list = field(default_factory=list)  # source identity hashes
    rejects: list = field(default_factory=list)  # quarantine files (relative to _lakevec/)
    info: dict = field(default_factory=dict)  # free-form (rows, bytes...), stored in the record
    exact: bool = False  # commit only on exactly the version read (schema changes: the first rows' columns)
    columns: list | None = None  # user columns the new fragments were written for (appends)
    on_duplicate: str = "raise"  # a gap commit added some of these ids: "raise" (remove all rows) | "drop" (dups)
    drop_ids: object = None  # callable(keys) -> rows dropped: rewrite this change without those ids ("drop")

    def delta(self) -> dict:
        d: dict = {}
        assigned = {f: int(p) for f, p in self.files.items() if p is not None and int(p) >= 0}
        if assigned and self.index_id:
            d["files"] = {self.index_id: assigned}
        if self.index is not None:
            d["index"] = self.index.to_json()
        for name in ("removed", "runs_removed", "keys", "sources", "rejects"):
            v = getattr(self, name)
            if v:
                d[name] = list(v)
        if self.runs_added:
            d["runs_added"] = [r.to_json() for r in self.runs_added]
        return d

    @property
    def gap_sensitive(self) -> bool:
        """Whether a commit landing between validation and this one could duplicate something of it (ids, a key,
        source files). Only such changes wait for a quiet moment before committing; the others (index builds,
        compaction, deletes) let Lance re-base them, or refuse them on a real conflict."""
        return bool(self.keys or self.sources or (self.new_keys is not None and len(self.new_keys)))


@dataclass
class CommitResult:
    version: int
    txn: str
    state: TableState
    attempts: int = 1
    gap: int = 0  # versions Lance put between the validated parent and this commit
    compensated_rows: int = 0


def _open_latest(t):
    return t._open_latest()


def _records_between(t, ds, lo: int, hi: int) -> list[tuple[int, dict]]:
    """Return [(version, record)] of the lakevec commits in versions (lo, hi]."""
    out = []
    for v in range(lo + 1, hi + 1):
        txn = txn_of(ds, v)
        if txn is not None:
            out.append((v, t.states.record(txn)))
    return out


class _Conflicts:
    """What the commits in a range did that this change must not repeat."""

    def __init__(self, t, change: Change, records: list[tuple[int, dict]], id_type: str):
        self.keys: dict[str, int] = {}
        self.sources: dict[str, int] = {}
        self.dup_keys = np.empty(0, dtype=np.int64 if id_type == "int64" else np.uint64)
        self.schema_change = None
        self.index_change = None
        ck, cs = set(change.keys), set(change.sources)
        runs: list[IdRun] = []
        for v, rec in records:
            d = rec.get("delta") or {}
            for k in d.get("keys") or ():
                if k in ck:
                    self.keys.setdefault(k, v)
            for h in d.get("sources") or ():
                if h in cs:
                    self.sources.setdefault(h, v)
            cols = (rec.get("info") or {}).get("columns")
            if cols is not None and (change.columns is None or list(cols) != list(change.columns)):
                self.schema_change = v
            if d.get("index"):
                self.index_change = v
            runs += [IdRun.from_json(r) for r in d.get("runs_added") or ()]
        if change.new_keys is not None and len(change.new_keys) and runs:
            reader = RunReader(t.store, t.loc)
            lo, hi = change.runs_added[0].lo, change.runs_added[0].hi
            found = [overlap(change.new_keys, reader.keys(r)) for r in runs if r.overlaps(lo, hi)]
            if found:
                self.dup_keys = unique(np.concatenate(found))

    @property
    def already(self) -> bool:
        return bool(self.keys or self.sources)


def _first_version(d: dict) -> int:
    return min(d.values())


def _validate(t, change: Change, conflicts: _Conflicts, parent: int) -> None:
    """Raise if ``change`` may not be committed on top of the commits ``conflicts`` describes."""
    if conflicts.keys:
        k, v = next(iter(conflicts.keys.items()))
        raise _mark_not_committed(AlreadyCommitted(
            f"ingestion key {k!r} of table {t.name!r} was committed by another run at version {v}",
            v, keys=list(conflicts.keys)))
    if conflicts.sources:
        n, v = len(conflicts.sources), _first_version(conflicts.sources)
        if n == len(change.sources):
            raise _mark_not_committed(AlreadyCommitted(
                f"the {n} source file(s) of this ingestion into table {t.name!r} were committed by another run "
                f"(version {v})", v, sources=list(conflicts.sources)))
        raise _mark_not_committed(CommitConflictError(
            f"{n} of the {len(change.sources)} source files of this ingestion into table {t.name!r} were committed "
            f"by another run meanwhile (version {v}); nothing was committed: run the ingestion again to add the "
            "remaining files"))
    if len(conflicts.dup_keys):
        shown = _show_keys(change, conflicts.dup_keys)
        raise _mark_not_committed(ValidationError(
            f"{len(conflicts.dup_keys)} duplicate id(s) already in the table ({shown}): another writer committed "
            f"them after this ingestion read version {parent}; nothing was written to table {t.name!r}",
            problems=[(None, ID_COLUMN, f"duplicate id {s}: already in the table") for s in shown.split(", ")[:5]],
            source="concurrent commit"))
    if conflicts.schema_change is not None and change.op == "append":
        raise _mark_not_committed(CommitConflictError(
            f"the columns of table {t.name!r} were set by a concurrent ingestion (version "
            f"{conflicts.schema_change}) while these rows were written for the old columns; nothing was "
            "committed, retry the ingestion"))


def _show_keys(change: Change, keys: np.ndarray, limit: int = 5) -> str:
    if change.runs_added and change.runs_added[0].id_type == "string":
        return f"{len(keys)} string id(s)"
    return ", ".join(str(int(k)) for k in keys[:limit]) + (" ..." if len(keys) > limit else "")


def _write_checkpoint(t, state: TableState) -> None:
    uri = t.loc.join(META_DIR, CHECKPOINTS_DIR, f"{state.version:012d}.json")
    import json
    t.store.put_if_absent(uri, json.dumps(state.to_json(), sort_keys=True).encode())
    t.states.remember_checkpoint(state)


def _record(change: Change, state: TableState, t) -> dict:
    checkpoint, chain = state.next_chain()
    if len(chain) >= CHECKPOINT_EVERY:
        # a conditional create: the first writer on this parent writes it, the others' PUT is refused
        if not t.states.has_checkpoint(state.version):
            _write_checkpoint(t, state)
        checkpoint, chain = state.version, []
    return {"format": FORMAT, "txn": change.txn, "op": change.op, "parent": state.version,
            "checkpoint": checkpoint, "chain": [list(c) for c in chain], "delta": change.delta(),
            "info": change.info, "written_at": time.time()}


def find_txn(t, txn: str, after: int):
    """Return the dataset version committed by ``txn`` (searching versions after ``after``), or None."""
    ds = _open_latest(t)
    for v in range(ds.version, after, -1):
        if txn_of(ds, v) == txn:
            return ds if v == ds.version else open_dataset(t.data_uri, t.lake.lance_options, v)
    return None


def _lance_commit(t, change: Change, parent: int):
    tx = lance.Transaction(parent, change.operation, uuid=change.txn,
                           transaction_properties={TXN_PROPERTY: change.txn, OP_PROPERTY: change.op})
    base = getattr(t, "_latest", None)  # the opened parent: Lance then reuses its manifest instead of re-reading it
    if base is None or base.version != parent:
        base = t.data_uri
    return lance.LanceDataset.commit(base, tx, storage_options=t.lake.lance_options, max_retries=0)


def _is_lance_conflict(e: BaseException) -> tuple[bool, bool]:
    """Return (is a definite conflict, retryable)."""
    try:
        from lance.commit import CommitConflictError as LanceConflict
    except ImportError:  # pragma: no cover
        LanceConflict = ()
    low = str(e).lower()
    # Lance marks every conflict retryable, but a rewrite of fragments another commit removed can never land
    gone = any(m in low for m in _FRAGMENTS_GONE)
    if LanceConflict and isinstance(e, LanceConflict):
        return True, bool(getattr(e, "retryable", True)) and not gone
    if "commit conflict" in low or "preempted by concurrent" in low:
        return True, "retryable" in low and not gone
    return False, False


_FRAGMENTS_GONE = ("does not contain a fragment", "wants to replace", "fragment that was deleted",
                   "fragments that were deleted")


# test hook: called after validation and before the Lance commit (to inject concurrent commits)
_before_lance_commit = None


def commit(t, change: Change, read_state: TableState, what: str) -> CommitResult:
    """Commit ``change`` on top of ``read_state`` (the version the writer read); see the module docstring.

    ``t``: the table (anything with ``name``, ``store``, ``loc``, ``data_uri``, ``lake.lance_options``,
    ``states`` (a ``state.StateReader``) and ``meta.id_type``).
    """
    state = read_state
    delay = BACKOFF_START
    attempt = 0
    while True:
        attempt += 1
        try:
            ds = _open_latest(t)
            if ds.version != state.version and change.exact:
                raise CommitConflictError(f"{what}: table {t.name!r} changed (version {ds.version}) since version "
                                          f"{state.version} was read; nothing was committed")
            if ds.version != state.version:
                recs = _records_between(t, ds, state.version, ds.version)
                conflicts = _Conflicts(t, change, recs, t.meta.id_type)
                if len(conflicts.dup_keys) and change.on_duplicate == "drop" and change.drop_ids is not None \
                        and not conflicts.already:
                    dropped = change.drop_ids(conflicts.dup_keys)  # rewrites the change without them
                    log.info("%s: %d row(s) whose ids another writer committed meanwhile were dropped", what, dropped)
                    conflicts.dup_keys = conflicts.dup_keys[:0]
                _validate(t, change, conflicts, state.version)
                state = t.states.state_at(ds)
            rec = _record(change, state, t)
            t.store.write_json(t.loc.join(META_DIR, COMMITS_DIR, f"{change.txn}.json"), rec)
        except LakevecError as e:
            raise _mark_not_committed(e)
        except Exception as e:
            raise _mark_not_committed(wrap_io_error(e, what)) from e
        t.states.remember_record(rec)
        moved = False
        if change.gap_sensitive:  # narrow the window in which Lance would re-base this commit over another one
            try:
                moved = _open_latest(t).version != state.version
            except Exception:
                moved = False  # the commit below reports the store's state
        if moved and attempt < MAX_ATTEMPTS:
            time.sleep(delay * random.random())  # jitter: writers racing for the same version spread out
            delay = min(BACKOFF_MAX, delay * 2)
            continue
        if _before_lance_commit is not None:  # tests: a commit landing inside that window
            _before_lance_commit(t, change, state.version)
        try:
            new = _lance_commit(t, change, state.version)
        except Exception as e:
            conflict, retryable = _is_lance_conflict(e)
            if conflict and retryable and attempt < MAX_ATTEMPTS:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            if conflict:
                why = "retries exhausted" if retryable else "an incompatible concurrent change"
                raise _mark_not_committed(CommitConflictError(
                    f"{what}: {why} ({clean_error_text(e)[:200]}); nothing was committed, retry the job")) from e
            new = _resolve_uncertain(t, change, state.version, e, what)
        except BaseException as e:  # an interrupt: Python raises it once Lance's (blocking) call has returned
            try:
                new = find_txn(t, change.txn, state.version)
            except Exception:
                e.add_note(f"lakevec: {what}: interrupted during the commit and the store could not be asked whether "
                           "it landed: its files are kept (vacuum removes them if it did not); re-running is safe")
                raise
            if new is None:
                raise _mark_not_committed(e)
        return _finish(t, change, state, new, attempt, what, rec)


def _resolve_uncertain(t, change: Change, parent: int, e: Exception, what: str):
    """The Lance commit raised something else than a conflict: find out whether it landed."""
    try:
        found = find_txn(t, change.txn, parent)
    except Exception as e2:
        err = wrap_io_error(e, what)
        raise StorageError(f"{what}: the commit failed and its outcome is unknown ({err}; checking it failed too: "
                           f"{str(e2).splitlines()[0][:200]}); its files are kept (vacuum removes them if it did "
                           "not land) and re-running the job is safe") from e
    if found is not None:
        log.warning("%s: the commit raised (%s) but it landed as version %d", what, str(e)[:200], found.version)
        return found
    err = wrap_io_error(e, what)
    low = str(err).lower()
    if not any(w in low for w in ("unreachable", "timed out", "timeout", "connection", "broken pipe", "reset")):
        # The store answered and no version carries the txn: Lance failed before writing its manifest.
        raise _mark_not_committed(err) from e
    # A transport failure: the manifest PUT may still be applied by the store after we looked. Keep the
    # files; vacuum removes them once no version references them.
    err.add_note(f"lakevec: {what}: the commit's outcome is unknown (no version carries it yet); its files are "
                 "kept and re-running the job is safe")
    raise err from e


def _finish(t, change: Change, state: TableState, new, attempts: int, what: str, rec: dict) -> CommitResult:
    c = new.version
    gap = c - state.version - 1
    compensated = 0
    if gap > 0:
        recs = _records_between(t, new, state.version, c - 1)
        conflicts = _Conflicts(t, change, recs, t.meta.id_type)
        if conflicts.already or len(conflicts.dup_keys):
            drop_all = conflicts.already or change.on_duplicate == "raise"
            compensated = _compensate(t, change, new, conflicts, what, drop_all)
            if drop_all:
                # committed, then removed again: the files stay (version c references them)
                try:
                    _validate(t, change, conflicts, state.version)
                except LakevecError as e:
                    e.lakevec_not_committed = False  # type: ignore[attr-defined]
                    raise
            new = _open_latest(t)
    if gap == 0 and not compensated:  # the state of the new version is the parent's plus this record
        st = apply_record(state, rec, c)
        st.checkpoint, st.chain = rec.get("checkpoint"), [tuple(x) for x in rec.get("chain") or ()]
        t.states.remember(st)
    else:
        st = t.states.state_at(new)
    if hasattr(t, "_latest"):
        t._latest = new  # the version this writer made is the latest it knows
    return CommitResult(new.version, change.txn, st, attempts, gap, compensated)


def _compensate(t, change: Change, ds, conflicts: _Conflicts, what: str, drop_all: bool) -> int:
    """Delete this commit's rows (all, or its duplicates) after Lance re-based it over a commit that added the
    same key, source files or ids; return the rows deleted."""
    mine = set(change.files)
    frags = [fr for fr in ds.get_fragments() if fr.metadata.files and file_path(fr.metadata.files[0]) in mine]
    if drop_all:
        pred = "true"
    else:
        if t.meta.id_type != "int64":
            raise CommitConflictError(f"{what}: committed as version {ds.version} together with a concurrent commit of "
                                      f"the same string ids; remove the duplicates with compact()")
        ids = ", ".join(str(int(k)) for k in conflicts.dup_keys)
        pred, drop_all = f"{ID_COLUMN} IN ({ids})", False
    updated, deleted, rows = [], [], 0
    for fr in frags:
        if drop_all:
            deleted.append(fr.fragment_id)
            rows += fr.count_rows()
            continue
        dup = fr.count_rows(pred)
        if not dup:
            continue
        newmd = fr.delete(pred)  # writes a deletion file (not committed yet)
        if newmd is None:
            deleted.append(fr.fragment_id)
        else:
            updated.append(newmd)
        rows += dup
    if not updated and not deleted:
        return 0
    removed = [file_path(fr.metadata.files[0]) for fr in frags if fr.fragment_id in deleted]
    op = lance.LanceOperation.Delete(updated, deleted, pred)
    comp = Change(op="delete", operation=op, removed=removed, info={"compensates": change.txn})
    log.warning("%s: version %d duplicated %s committed concurrently; deleting %d row(s) of this commit",
                what, ds.version, "a key/source files" if conflicts.already else f"{len(conflicts.dup_keys)} id(s)", rows)
    commit(t, comp, t.states.state_at(ds), f"{what} (removing duplicates)")
    return rows
