"""``vacuum``: remove old versions, and files and lakevec objects that nothing can use any more.

A file or object is removed only when all of these hold:

- no **kept version** references it (versions newer than the retention, and always the latest);
- it is **older than the retention** (default and minimum 7 days, as Lance and Delta; shorter only with
  ``force=True``: a job that has written files but not committed yet owns "unreferenced" files);
- it was written **before the start of every live job lease** (``commit.claims``): a job that runs longer
  than the retention keeps its files until it commits or its lease expires.

What goes: Lance's old versions (``cleanup_old_versions``; skipped while a lease older than Lance's own
7-day threshold for unverified files is live), unreferenced data files (failed, killed or retried
tasks; commits that never happened), and lakevec objects of no kept version: commit records,
checkpoints, id runs, rejects files, index objects, expired claims and leases.

``dry_run`` computes exactly what a real run would remove (Lance's part with
``explain_cleanup_old_versions``), and removes nothing.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time

from ..commit.claims import CLAIMS_DIR, LEASES_DIR, live_leases
from ..config import DATA_DIR, INDEX_DIR, META_DIR
from ..errors import InvalidArgumentError, LakevecError, StorageError
from ..state import CHECKPOINTS_DIR, COMMITS_DIR, IDS_DIR, REJECTS_DIR, txn_of
from ..store.lance_io import file_path
from ..store.objects import wrap_io_error

log = logging.getLogger("lakevec.maintenance")

MIN_RETENTION = _dt.timedelta(days=7)
LANCE_UNVERIFIED = _dt.timedelta(days=7)  # Lance removes never-committed files older than this anyway
LEASE_MARGIN = 300.0  # seconds before a lease's start still protected (clock skew between machines)


def retention(older_than, force: bool = False) -> _dt.timedelta:
    """Return the retention period; refuse less than MIN_RETENTION unless ``force``."""
    if older_than is None:
        td = MIN_RETENTION
    elif isinstance(older_than, _dt.timedelta):
        td = older_than
    elif isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        td = _dt.timedelta(seconds=float(older_than))
    else:
        raise InvalidArgumentError(f"older_than must be a timedelta or a number of seconds, got {older_than!r}")
    if td.total_seconds() < 0:
        raise InvalidArgumentError(f"older_than must not be negative, got {older_than!r}")
    if td < MIN_RETENTION and not force:
        raise InvalidArgumentError(
            f"older_than={td} is shorter than the minimum retention of {MIN_RETENTION.days} days: a running job's "
            "files and readers of recent versions could lose their files; pass force=True (command line: --force) "
            "if no job and no reader can be using the table")
    return td


def _mtime(info) -> float | None:
    m = info.mtime
    if m is None:
        return None
    return m.timestamp() if hasattr(m, "timestamp") else float(m)


class _Plan:
    """What vacuum keeps and removes, computed the same way for a dry run and a real run."""

    def __init__(self, table, td: _dt.timedelta, now: float):
        self.table = table
        self.now = now
        self.cutoff = now - td.total_seconds()
        leases = live_leases(table.store, table.loc, now)
        self.leases = len(leases)
        oldest = min((float(b.get("started_at", now)) for b in leases), default=None)
        self.file_cutoff = self.cutoff if oldest is None else min(self.cutoff, oldest - LEASE_MARGIN)
        self.skip_lance = oldest is not None and oldest < now - LANCE_UNVERIFIED.total_seconds() + LEASE_MARGIN
        ds = table._open_latest()
        self.ds = ds
        self.kept = [v["version"] for v in ds.versions() if _ts(v["timestamp"]) >= self.cutoff or v["version"] == ds.version]
        self.removed_versions = len(ds.versions()) - len(self.kept)
        self._references()

    def old_enough(self, info) -> bool:
        m = _mtime(info)
        return m is not None and m <= self.file_cutoff

    def _references(self) -> None:
        t = self.table
        self.data_files: set[str] = set()
        self.txns: set[str] = set()
        self.checkpoints: set[int] = set()
        self.runs: set[str] = set()
        self.rejects: set[str] = set()
        self.indexes: set[str] = set()
        for v in self.kept:
            dv = self.ds if v == self.ds.version else t._open_version(v)
            for fr in dv.get_fragments():
                for df in fr.metadata.files:
                    self.data_files.add(file_path(df))
            st = t.state_of(dv)
            txn = txn_of(self.ds, v)
            if txn is not None:
                self.txns.add(txn)
                rec = t.states.record(txn)
                if rec.get("checkpoint") is not None:
                    self.checkpoints.add(int(rec["checkpoint"]))
                self.txns.update(x[1] for x in rec.get("chain") or ())
            if st.checkpoint is not None:
                self.checkpoints.add(int(st.checkpoint))
            self.txns.update(x[1] for x in st.chain)
            self.runs.update(st.runs)
            self.rejects.update(st.rejects)
            if st.index is not None:
                self.indexes.add(st.index.index_id)
            self.indexes.update(iid for iid, _ in st.files.values())


def _ts(ts) -> float:
    if hasattr(ts, "timestamp"):
        return ts.timestamp()
    return float(ts)


def vacuum(table, older_than=None, dry_run: bool = False, force: bool = False) -> dict:
    """Remove what no kept version and no running job can use (see the module docstring); return counts."""
    t0 = time.time()
    td = retention(older_than, force)
    plan = _Plan(table, td, time.time())
    stats = {"versions_removed": 0, "data_files_removed": 0, "bytes_removed": 0, "metadata_objects_removed": 0,
             "indexes_removed": 0, "claims_removed": 0, "live_jobs": plan.leases,
             "older_than_seconds": td.total_seconds(), "dry_run": dry_run, "version": plan.ds.version,
             "lance_cleanup": "skipped (a job older than 7 days is running)" if plan.skip_lance else "done"}
    # 1. Lance's old versions (and the data files only they referenced)
    lance_gone: set[str] = set()  # data files Lance's cleanup removes (not counted twice below)
    if not plan.skip_lance:
        try:
            if dry_run:
                ex = plan.ds.explain_cleanup_old_versions(older_than=td, error_if_tagged_old_versions=False,
                                                          include_files=True, max_files=10_000_000)
                cs = ex.stats
                lance_gone = {c.path.rsplit("/", 1)[-1] for c in ex.candidate_files if c.kind == "data"}
            else:
                cs = plan.ds.cleanup_old_versions(older_than=td, error_if_tagged_old_versions=False)
        except Exception as e:
            raise wrap_io_error(e, f"removing old versions of table {table.name!r}") from e
        stats["versions_removed"] = int(cs.old_versions)
        stats["data_files_removed"] += int(cs.data_files_removed)
        stats["bytes_removed"] += int(cs.bytes_removed)
    # 2. data files no kept version references (Lance leaves files that no version ever committed)
    data_dir = table.loc.join(DATA_DIR, "data")
    for info in table.store.list(data_dir):
        name = info.base_name
        if name in plan.data_files or name in lance_gone or not name.endswith(".lance") or not plan.old_enough(info):
            continue
        stats["data_files_removed"] += 1
        stats["bytes_removed"] += int(info.size or 0)
        if not dry_run:
            table.store.delete(f"{data_dir}/{name}")
    # 3. lakevec objects of no kept version
    meta = lambda *p: table.loc.join(META_DIR, *p)  # noqa: E731
    for info in table.store.list(meta(COMMITS_DIR)):
        if info.base_name.endswith(".json") and info.base_name[:-5] not in plan.txns and plan.old_enough(info):
            _remove(table, f"{meta(COMMITS_DIR)}/{info.base_name}", stats, dry_run)
    for info in table.store.list(meta(CHECKPOINTS_DIR)):
        v = info.base_name.split(".")[0]
        if v.isdigit() and int(v) not in plan.checkpoints and int(v) not in plan.kept and plan.old_enough(info):
            _remove(table, f"{meta(CHECKPOINTS_DIR)}/{info.base_name}", stats, dry_run)
    for folder, used in ((IDS_DIR, plan.runs), (REJECTS_DIR, plan.rejects)):
        for info in table.store.list(meta(folder)):
            if f"{folder}/{info.base_name}" not in used and plan.old_enough(info):
                _remove(table, f"{meta(folder)}/{info.base_name}", stats, dry_run)
    index_dir = table.loc.join(INDEX_DIR)
    infos = table.store.list(index_dir)
    for info in infos:
        if not info.base_name.endswith(".json") or info.base_name.count(".") != 1:
            continue
        index_id = info.base_name[: -len(".json")]
        if index_id in plan.indexes or not plan.old_enough(info):
            continue
        stats["indexes_removed"] += 1
        if not dry_run:
            for other in infos:
                if other.base_name.startswith(index_id + "."):
                    table.store.delete(f"{index_dir}/{other.base_name}")
    # 4. expired claims and leases
    _vacuum_claims(table, plan, stats, dry_run)
    table._invalidate()
    stats["seconds"] = round(time.time() - t0, 3)
    log.info("vacuum of table %r: %s", table.name, stats)
    return stats


def _remove(table, uri: str, stats: dict, dry_run: bool) -> None:
    stats["metadata_objects_removed"] += 1
    if not dry_run:
        table.store.delete(uri)


def _vacuum_claims(table, plan: _Plan, stats: dict, dry_run: bool) -> None:
    claims = table.loc.join(META_DIR, CLAIMS_DIR)
    for info in table.store.list(claims, recursive=True):
        if not info.base_name.endswith(".json") or not plan.old_enough(info):
            continue
        try:
            body = table.store.read_json(info.path if "://" in info.path else _uri(table, info.path))
        except (StorageError, LakevecError):
            continue
        if float(body.get("expires_at", 0)) < plan.now:
            stats["claims_removed"] += 1
            if not dry_run:
                table.store.delete(_uri(table, info.path))
    leases = table.loc.join(META_DIR, LEASES_DIR)
    for info in table.store.list(leases):
        if not info.base_name.endswith(".json") or not plan.old_enough(info):
            continue
        try:
            body = table.store.read_json(f"{leases}/{info.base_name}")
        except (StorageError, LakevecError):
            continue
        if float(body.get("expires_at", 0)) < plan.now:
            stats["claims_removed"] += 1
            if not dry_run:
                table.store.delete(f"{leases}/{info.base_name}")


def _uri(table, fs_path: str) -> str:
    """The URI of a path returned by a recursive listing (bucket/key on S3, absolute locally)."""
    return fs_path if table.store.loc.is_local else f"s3://{fs_path}"
