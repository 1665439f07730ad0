"""Table maintenance: ``vacuum`` (old versions and orphans) and ``compact`` (merge small fragments).

vacuum(table, older_than)
    1. Pending ingestion records (``_lakevec/ingest/<key>.json``): a record whose files reached a
       committed version is marked committed (its driver died between commit and record update);
       one that never committed and is older than the retention is deleted, so the key can be
       ingested again.
    2. Lance ``cleanup_old_versions(older_than)``: versions older than the retention and the files
       only they use. The current version is never removed.
    3. lakevec orphans, each only when older than the retention (so a job that is still writing is
       never disturbed; use a retention longer than your longest job): data files that no remaining
       version references (written by failed, killed or retried tasks, or by jobs that died before
       their commit), partition-map sidecars none of whose files any remaining version references,
       and index objects (metadata, centroids, calibration) no remaining sidecar uses.
    4. Old versions of the quarantine table ``_lakevec/rejects.lance``.

compact(table)
    Merges small fragments *within a partition* (partition purity: never across partitions, and never
    Lance's generic compaction, which would mix them). Unassigned fragments (no index, or rows
    appended concurrently with an index build) are merged among themselves. Tasks (``CompactTask``,
    run by an engine) read the fragments of each group and write one merged fragment; the driver
    writes the partition-map sidecar of the new files, then commits one Lance ``Rewrite`` on top of
    the version it read (concurrent appends survive it).
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass

import lance
import numpy as np

from .config import MAX_ROWS_PER_FILE, META_DIR, UNASSIGNED
from .errors import InvalidArgumentError, LakevecError, StorageError
from .ingest.write import WrittenFiles, delete_written
from .store.lance_io import commit, open_dataset
from .store.objects import new_id, wrap_io_error

log = logging.getLogger("lakevec.maintenance")

DEFAULT_RETENTION = _dt.timedelta(days=7)
COMPACT_TASK_BYTES = 256 << 20  # source bytes one compaction task merges


def _retention(older_than) -> _dt.timedelta:
    if older_than is None:
        return DEFAULT_RETENTION
    if isinstance(older_than, _dt.timedelta):
        td = older_than
    elif isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        td = _dt.timedelta(seconds=float(older_than))
    else:
        raise InvalidArgumentError(f"older_than must be a timedelta or a number of seconds, got {older_than!r}")
    if td.total_seconds() < 0:
        raise InvalidArgumentError(f"older_than must not be negative, got {older_than!r}")
    return td


def _mtime(info) -> float | None:
    m = info.mtime
    if m is None:
        return None
    return m.timestamp() if hasattr(m, "timestamp") else float(m)


def _old_enough(info, cutoff: float) -> bool:
    m = _mtime(info)
    return m is not None and m <= cutoff


def referenced_files(table) -> set[str]:
    """Return the data file names referenced by any version of the table that still exists."""
    ds = table._open_latest()
    names: set[str] = set()
    for v in ds.versions():
        try:
            dv = ds if v["version"] == ds.version else table._open_version(v["version"])
        except LakevecError:
            continue
        for fr in dv.get_fragments():
            for df in fr.metadata.files:
                names.add(df.path)
    return names


def _vacuum_ingest_records(table, cutoff: float, stats: dict, dry_run: bool) -> None:
    from .ingest.job import already_ingested
    folder = table.loc.join(META_DIR, "ingest")
    for info in table.store.list(folder):
        if not info.base_name.endswith(".json"):
            continue
        key = info.base_name[: -len(".json")]
        try:
            rec = table.files.read_ingest_record(key)
        except StorageError:
            continue
        if rec is None or rec.get("state") == "committed":
            continue
        if already_ingested(table, key) is not None:  # committed after all: the record now says so
            stats["ingest_records_resolved"] += 1
            continue
        if _old_enough(info, cutoff):
            stats["ingest_records_removed"] += 1
            if not dry_run:
                table.store.delete(table.loc.join(META_DIR, "ingest", info.base_name))


def vacuum(table, older_than=None, dry_run: bool = False) -> dict:
    """Remove versions older than ``older_than`` (timedelta or seconds; default 7 days) and orphans.

    Returns counts: versions_removed, data_files_removed, bytes_removed, partmaps_removed,
    indexes_removed, ingest_records_removed, ingest_records_resolved. ``dry_run`` only counts lakevec's
    own orphans (Lance's version cleanup is skipped).
    """
    t0 = time.time()
    td = _retention(older_than)
    cutoff = time.time() - td.total_seconds()
    stats = {"versions_removed": 0, "data_files_removed": 0, "bytes_removed": 0, "partmaps_removed": 0,
             "indexes_removed": 0, "ingest_records_removed": 0, "ingest_records_resolved": 0,
             "older_than_seconds": td.total_seconds(), "dry_run": dry_run}
    # 1. pending ingestion records (before old versions go: resolving them looks at those versions)
    _vacuum_ingest_records(table, cutoff, stats, dry_run)
    # 2. Lance's own cleanup of old versions
    ds = table._open_latest()
    if not dry_run:
        try:
            cs = ds.cleanup_old_versions(older_than=td, error_if_tagged_old_versions=False)
        except Exception as e:
            raise wrap_io_error(e, f"removing old versions of table {table.name!r}") from e
        stats["versions_removed"] = int(cs.old_versions)
        stats["data_files_removed"] += int(cs.data_files_removed)
        stats["bytes_removed"] += int(cs.bytes_removed)
    stats["version"] = ds.version
    # 3a. data files no remaining version references
    refs = referenced_files(table)
    data_dir = table.loc.join("data.lance", "data")
    for info in table.store.list(data_dir):
        if info.base_name in refs or not info.base_name.endswith(".lance") or not _old_enough(info, cutoff):
            continue
        stats["data_files_removed"] += 1
        stats["bytes_removed"] += int(info.size or 0)
        if not dry_run:
            table.store.delete(f"{data_dir}/{info.base_name}")
    # 3b. partition-map sidecars whose files are all gone
    used_indexes: set[str] = set()
    partmap_dir = table.loc.join(META_DIR, "partmaps")
    for info in table.store.list(partmap_dir):
        if not info.base_name.endswith(".json"):
            continue
        try:
            body = table.store.read_json(f"{partmap_dir}/{info.base_name}")
        except StorageError:
            continue
        files = set(body.get("files") or {})
        if (files & refs) or not _old_enough(info, cutoff):
            used_indexes.add(body.get("index_id"))
            continue
        stats["partmaps_removed"] += 1
        if not dry_run:
            table.files.delete_partmap(info.base_name)
    # 3c. index objects no sidecar uses any more
    index_dir = table.loc.join("index")
    infos = table.store.list(index_dir)
    for info in infos:
        if not info.base_name.endswith(".json") or info.base_name.count(".") != 1:
            continue
        index_id = info.base_name[: -len(".json")]
        if index_id in used_indexes or not _old_enough(info, cutoff):
            continue
        stats["indexes_removed"] += 1
        if not dry_run:
            for other in infos:
                if other.base_name.startswith(index_id + "."):
                    table.store.delete(f"{index_dir}/{other.base_name}")
    # 4. the quarantine table's old versions
    if not dry_run and table.store.exists(table.rejects_uri):
        try:
            open_dataset(table.rejects_uri, table.lake.lance_options).cleanup_old_versions(
                older_than=td, error_if_tagged_old_versions=False)
        except Exception as e:  # the rejects table is an audit trail: never fail vacuum on it
            log.warning("vacuum: cleaning old versions of %s failed: %s", table.rejects_uri, e)
    table._invalidate()
    stats["seconds"] = round(time.time() - t0, 3)
    log.info("vacuum of table %r: %s", table.name, stats)
    return stats


# --------------------------------------------------------------------------------------------------
# compaction
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompactTask:
    """Merge groups of fragments of one version; each group holds one partition (or unassigned rows)."""

    task_id: int
    data_uri: str
    storage_options: dict | None
    version: int
    groups: tuple  # ((partition, (fragment ids...)), ...)


@dataclass
class CompactResult:
    task_id: int
    groups: list  # [(partition, old fragment ids, new FragmentMetadata list)]
    written: WrittenFiles


def run_compact_task(task: CompactTask) -> CompactResult:
    """Engine task: read each group's fragments (deleted rows dropped) and write them as one fragment."""
    from lance.fragment import write_fragments
    ds = open_dataset(task.data_uri, task.storage_options, task.version)
    out = CompactResult(task.task_id, [], WrittenFiles())
    from .store.location import parse_location
    from .store.objects import ObjectStore
    try:
        for part, fids in task.groups:
            frags = [ds.get_fragment(f) for f in fids]
            tbl = ds.scanner(fragments=frags, scan_in_order=True).to_table()
            if tbl.num_rows == 0:
                out.groups.append((part, tuple(fids), []))
                continue
            try:
                new = write_fragments(tbl, task.data_uri, schema=ds.schema, max_rows_per_file=max(tbl.num_rows, 1),
                                      storage_options=task.storage_options)
            except Exception as e:
                raise wrap_io_error(e, f"writing compacted fragments to {task.data_uri}") from e
            out.written.add(new, part)
            out.groups.append((part, tuple(fids), new))
    except BaseException:
        delete_written(ObjectStore(parse_location(task.data_uri, task.storage_options)), task.data_uri, out.written)
        raise
    return out


def plan_compaction(snap, target_rows: int) -> list[tuple[int, tuple]]:
    """Return (partition, fragment ids) groups to merge: small fragments of one partition, packed up to
    ``target_rows``; a lone fragment with deleted rows is rewritten too."""
    by_part: dict[int, list] = {}
    for f in snap.fragments:
        by_part.setdefault(f.partition if snap.index is not None else UNASSIGNED, []).append(f)
    groups = []
    for part in sorted(by_part):
        frs = sorted((f for f in by_part[part] if f.num_rows < target_rows), key=lambda f: f.fragment_id)
        cur, rows = [], 0
        bins = []
        for f in frs:
            if cur and rows + f.num_rows > target_rows:
                bins.append(cur)
                cur, rows = [], 0
            cur.append(f)
            rows += f.num_rows
        if cur:
            bins.append(cur)
        for b in bins:
            if len(b) > 1 or (len(b) == 1 and b[0].has_deletions):
                groups.append((part, tuple(f.fragment_id for f in b)))
    return groups


def compact(table, target_rows: int | None = None, engine="local", task_bytes: int = COMPACT_TASK_BYTES) -> dict:
    """Merge small fragments within each partition in one commit; return what was done.

    ``target_rows``: fragments smaller than this are merged, up to this many rows per merged fragment
    (default: the table's maximum rows per file).
    """
    t0 = time.time()
    target_rows = MAX_ROWS_PER_FILE if target_rows is None else target_rows
    if isinstance(target_rows, bool) or not isinstance(target_rows, (int, np.integer)) or target_rows < 1:
        raise InvalidArgumentError(f"target_rows must be positive, got {target_rows}")
    ds = table._open_latest()
    snap = table._snapshot_of(ds)
    before = len(snap.fragments)
    groups = plan_compaction(snap, target_rows)
    result = {"version": ds.version, "fragments_before": before, "fragments_after": before, "groups": 0,
              "fragments_merged": 0, "rows_rewritten": 0, "committed": False}
    if not groups:
        result["seconds"] = round(time.time() - t0, 3)
        return result
    size = {f.fragment_id: f.file_size for f in snap.fragments}
    tasks: list[list] = [[]]
    acc = 0
    for g in groups:
        gb = sum(size[f] for f in g[1])
        if tasks[-1] and acc + gb > task_bytes:
            tasks.append([])
            acc = 0
        tasks[-1].append(g)
        acc += gb
    records = [CompactTask(i, table.data_uri, table.lake.lance_options, ds.version, tuple(g))
               for i, g in enumerate(tasks) if g]
    from .engines import get_engine
    results: list[CompactResult] = []
    try:
        results = get_engine(engine).map(run_compact_task, records, name="compact")
        written = WrittenFiles()
        rw_groups = []
        by_id = {f.fragment_id: f for f in ds.get_fragments()}
        for r in sorted(results, key=lambda r: r.task_id):
            written.extend(r.written)
            for part, fids, new in r.groups:
                rw_groups.append(lance.LanceOperation.RewriteGroup([by_id[f].metadata for f in fids], list(new)))
        if snap.index is not None:
            assigned = {f: p for f, p in written.partitions.items() if p != UNASSIGNED}
            if assigned:  # the sidecar must exist before the commit makes the new files visible
                table.files.write_partmap(f"compact-{new_id()}", snap.index.index_id, assigned)
        new_ds = commit(table.data_uri, lance.LanceOperation.Rewrite(rw_groups, []), ds.version,
                        table.lake.lance_options, f"committing the compaction of table {table.name!r}")
    except BaseException:
        for r in results:
            delete_written(table.store, table.data_uri, r.written)
        raise
    table._invalidate()
    merged = sum(len(g[1]) for g in groups)
    result.update(version=new_ds.version, fragments_after=len(new_ds.get_fragments()), groups=len(groups),
                  fragments_merged=merged, rows_rewritten=int(written.rows), committed=True,
                  seconds=round(time.time() - t0, 3))
    log.info("compaction of table %r: %s", table.name, result)
    return result

