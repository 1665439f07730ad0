"""``compact``: merge small fragments within a partition, re-cluster unassigned rows, merge id runs.

Plan (driver): from the snapshot of the version read, group the small fragments of each partition
(packed up to ``target_rows``), and the unassigned fragments of an indexed table (rows appended while
an index was built, or by other Lance writers). Tasks (``CompactTask``, the same function under every
engine) read each group and write it back: a partition's group as one fragment of that partition; an
unassigned group assigned to its nearest centroids, one fragment per partition, so partition purity
and search speed come back. The driver commits one Lance ``Rewrite`` through ``lakevec.commit``
(concurrent appends survive it), with the new files' partitions in the commit record. Never Lance's
generic compaction: it would mix partitions.

Compaction yields to index builds and ``optimize``: while another job of those kinds holds a live lease on
the table, ``compact`` commits nothing and says so (``"skipped"``). Both rewrite the same fragments, so one
of them would lose its commit to the other, and the build is the more expensive one to repeat. The build
takes its lease first and then waits for compactions that are already running
(``commit.wait_while_running``), and compaction takes its lease before it looks: whichever starts second
sees the other's lease, so they do not rewrite the same version. (A lease that expired, e.g. of a job that
was killed, counts for nothing; the commit protocol keeps every interleaving safe.)

Id runs: when the table has more than ``MERGE_RUNS_OVER`` id runs (one per ingestion), they are merged
into one, in the same commit, so the id checks of later appends stay cheap.
"""
from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass

import lance
import numpy as np

from ..commit import Change, FragmentSink, WriteJob, WrittenFiles, delete_written, live_leases
from ..commit.ids import merge_runs
from ..config import INDEX_DIR, MAX_ROWS_PER_FILE, PARTITION_COLUMN, UNASSIGNED, VECTOR_COLUMN
from ..errors import InvalidArgumentError
from ..index.ivf import IvfModel
from ..search.reader import vectors_of
from ..state import IDS_DIR
from ..store.lance_io import file_path, open_dataset
from ..store.location import parse_location
from ..store.objects import ObjectStore

log = logging.getLogger("lakevec.maintenance")

COMPACT_TASK_BYTES = 256 << 20  # source bytes one compaction task merges
MERGE_RUNS_OVER = 16


@dataclass(frozen=True)
class CompactTask:
    """Merge groups of fragments of one version; each group holds one partition (or unassigned rows)."""

    task_id: int
    table_uri: str
    data_uri: str
    storage_options: dict | None
    version: int
    groups: tuple  # ((partition, (fragment ids...)), ...)
    index_id: str | None = None  # set: unassigned groups are assigned to this index's partitions
    metric: str = "l2"


@dataclass
class CompactResult:
    task_id: int
    groups: list  # [(partition, old fragment ids, new FragmentMetadata list)]
    written: WrittenFiles


def _model(task: CompactTask) -> IvfModel | None:
    if task.index_id is None:
        return None
    store = ObjectStore(parse_location(task.table_uri, task.storage_options))
    raw = store.read_bytes(f"{task.table_uri.rstrip('/')}/{INDEX_DIR}/{task.index_id}.centroids.npy")
    return IvfModel(np.load(io.BytesIO(raw), allow_pickle=False), task.metric)


def run_compact_task(task: CompactTask) -> CompactResult:
    """Engine task: read each group's fragments (deleted rows dropped) and write them back (see module doc)."""
    ds = open_dataset(task.data_uri, task.storage_options, task.version)
    out = CompactResult(task.task_id, [], WrittenFiles())
    model = None
    store = ObjectStore(parse_location(task.data_uri, task.storage_options))
    try:
        for part, fids in task.groups:
            frags = [ds.get_fragment(f) for f in fids]
            tbl = ds.scanner(fragments=frags, scan_in_order=True).to_table()
            if tbl.num_rows == 0:
                out.groups.append((part, tuple(fids), []))
                continue
            if part == UNASSIGNED and task.index_id is not None:
                model = model or _model(task)
                sink = FragmentSink(task.data_uri, ds.schema, task.storage_options, model,
                                    max_rows_per_file=MAX_ROWS_PER_FILE, flush_bytes=1 << 62)
                vec = np.ascontiguousarray(vectors_of(tbl.column(VECTOR_COLUMN)), dtype=np.float32)
                data = tbl.drop_columns([PARTITION_COLUMN])
                for b in data.to_batches(max_chunksize=1 << 20):
                    n0 = b.num_rows
                    sink.add(b, vec[:n0])
                    vec = vec[n0:]
                w = sink.finish()
                out.written.extend(w)
                out.groups.append((part, tuple(fids), list(w.fragments)))
                continue
            sink = FragmentSink(task.data_uri, ds.schema, task.storage_options, None,
                                max_rows_per_file=max(tbl.num_rows, 1), flush_bytes=1 << 62)
            new = sink.write_table(tbl, part)
            out.written.extend(sink.out)
            out.groups.append((part, tuple(fids), new))
    except BaseException:
        delete_written(store, task.data_uri, out.written)
        raise
    return out


def plan_compaction(snap, target_rows: int) -> list[tuple[int, tuple]]:
    """Return (partition, fragment ids) groups to rewrite: small fragments of one partition packed up to
    ``target_rows``, a lone fragment with deleted rows, and (indexed tables) every unassigned fragment."""
    by_part: dict[int, list] = {}
    for f in snap.fragments:
        by_part.setdefault(f.partition if snap.index is not None else UNASSIGNED, []).append(f)
    groups = []
    for part in sorted(by_part):
        if part == UNASSIGNED and snap.index is not None:
            frs = sorted(by_part[part], key=lambda f: f.fragment_id)
            for i in range(0, len(frs), 64):  # assigned to partitions: every unassigned fragment goes
                groups.append((part, tuple(f.fragment_id for f in frs[i:i + 64])))
            continue
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
    with WriteJob(table, "compact") as job:
        return _compact(table, job, int(target_rows), engine, task_bytes, t0)


YIELDS_TO = ("index", "optimize")  # job kinds compaction does not race (see the module docstring)


def running_rewrites(table, own_job: str) -> list[dict]:
    """The live leases of other jobs that rewrite the whole table (index builds, optimize)."""
    return [b for b in live_leases(table.store, table.loc) if b.get("kind") in YIELDS_TO and b.get("job") != own_job]


def _compact(table, job: WriteJob, target_rows: int, engine, task_bytes: int, t0: float) -> dict:
    ds, state = job.ds, job.state
    snap = table._snapshot_of(ds)
    before = len(snap.fragments)
    result = {"version": ds.version, "fragments_before": before, "fragments_after": before, "groups": 0,
              "fragments_merged": 0, "rows_rewritten": 0, "id_runs_merged": 0, "committed": False}
    busy = running_rewrites(table, job.txn)
    if busy:
        b = busy[0]
        result["skipped"] = (f"a {'n index build' if b['kind'] == 'index' else 'n optimize'} (job {b['job'][:12]}, "
                             f"host {b.get('host')}) is rewriting the table; compaction yields to it")
        result["seconds"] = round(time.time() - t0, 3)
        log.info("compact %r: %s", table.name, result["skipped"])
        return result
    groups = plan_compaction(snap, target_rows)
    merge = list(state.runs.values()) if len(state.runs) > MERGE_RUNS_OVER else []
    if not groups and not merge:
        result["seconds"] = round(time.time() - t0, 3)
        return result
    size = {f.fragment_id: f.file_size for f in snap.fragments}
    buckets: list[list] = [[]]
    acc = 0
    for g in groups:
        gb = sum(size[f] for f in g[1])
        if buckets[-1] and acc + gb > task_bytes:
            buckets.append([])
            acc = 0
        buckets[-1].append(g)
        acc += gb
    index_id = snap.index.index_id if snap.index is not None else None
    records = [CompactTask(i, table.loc.uri, table.data_uri, table.lake.lance_options, ds.version, tuple(g), index_id,
                           table.meta.metric) for i, g in enumerate(buckets) if g]
    from ..engines import get_engine
    results: list[CompactResult] = get_engine(engine).map(run_compact_task, records, name="compact") if records else []
    written = WrittenFiles()
    rw_groups, removed = [], []
    by_id = {f.fragment_id: f for f in ds.get_fragments()}
    for r in sorted(results, key=lambda r: r.task_id):
        written.extend(r.written)
        job.track(r.written)
        for part, fids, new in r.groups:
            olds = [by_id[f].metadata for f in fids]
            removed += [file_path(df) for md in olds for df in md.files]
            rw_groups.append(lance.LanceOperation.RewriteGroup(olds, list(new)))
    runs_added, runs_removed = [], []
    if merge:
        run = merge_runs(table.store, table.loc, merge, f"{IDS_DIR}/{job.txn}-merged.npy")
        job.track_object(run.path)
        runs_added, runs_removed = [run], [r.path for r in merge]
    op = lance.LanceOperation.Rewrite(rw_groups, []) if rw_groups else lance.LanceOperation.Append([])
    change = Change(op="compact", operation=op, files=dict(written.partitions), index_id=index_id, removed=removed,
                    runs_added=runs_added, runs_removed=runs_removed,
                    info={"rows": int(written.rows), "groups": len(groups)})
    res = job.commit(change, state, f"committing the compaction of table {table.name!r}")
    new_ds = table._open_version(res.version)
    merged = sum(len(g[1]) for g in groups)
    result.update(version=res.version, fragments_after=len(new_ds.get_fragments()), groups=len(groups),
                  fragments_merged=merged, rows_rewritten=int(written.rows), id_runs_merged=len(runs_removed),
                  committed=True, seconds=round(time.time() - t0, 3))
    log.info("compaction of table %r: %s", table.name, result)
    return result
