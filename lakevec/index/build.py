"""Table.build_index: sample, train k-means, assign every row, rewrite clustered by partition, commit.

Plan, then execute: the driver samples and trains, writes the centroids, and plans ``BuildTask``
records (fragment ids of the version it read); tasks (same function under every engine) read their
fragments, assign rows to their nearest centroid, write one fragment per partition and return the
fragment metadata plus a partial exact top-k of the calibration queries. The driver writes the
index metadata, then commits once through ``lakevec.commit``: a Lance ``Rewrite`` of all old fragments
into the new ones, whose commit record puts the new index in force and maps every new file to its
partition (concurrent appends survive it: they stay unassigned and are scanned until compacted
or re-indexed). The build runs under a job lease, so vacuum never removes its files while it runs.

Default nprobe: calibration queries are held-out sample rows; tasks compute their exact top-10
over the whole table while assigning, so the driver knows, for each neighbour, how far down the
query's centroid ranking its partition is: recall@10 for every nprobe follows exactly, and the
smallest nprobe reaching ``CALIBRATION_TARGET_RECALL`` becomes the default.
"""
from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import lance
import numpy as np
import pyarrow as pa

from ..config import (CALIBRATION_K, CALIBRATION_QUERIES, CALIBRATION_TARGET_RECALL, ID_COLUMN,
                      INDEX_DIR, KMEANS_MAX_POINTS_PER_CENTROID, PARTITION_COLUMN, VECTOR_COLUMN,
                      default_num_partitions)
from ..commit import Change, FragmentSink, WriteJob, WrittenFiles, delete_written, wait_while_running
from ..errors import InvalidArgumentError, LakevecError
from ..metadata import IndexMeta
from ..search.kernels import distances, topk_rows
from ..search.reader import vectors_of
from ..store.lance_io import file_path, open_dataset
from ..store.location import parse_location
from ..store.objects import ObjectStore, new_id
from .ivf import IvfModel
from .kmeans import train_kmeans

BUILD_TASK_BYTES = 1 << 30  # data one build task clusters in memory (one fragment per partition each)


@dataclass(frozen=True)
class BuildTask:
    """A picklable unit of index-build work: which fragments to cluster, where the model is."""

    task_id: int
    table_uri: str
    data_uri: str
    storage_options: dict | None
    read_version: int
    fragment_ids: tuple
    index_id: str
    metric: str
    schema: pa.Schema
    flush_bytes: int = BUILD_TASK_BYTES
    row_ranges: tuple = ()  # ((fragment id, offset, limit), ...): slices of fragments bigger than a task


@dataclass
class BuildTaskResult:
    """What a build task wrote, plus its partial calibration top-k."""

    task_id: int
    written: WrittenFiles
    calib_dist: np.ndarray
    calib_part: np.ndarray
    calib_ids: np.ndarray
    rows: int = 0
    seconds: float = 0.0
    partition_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _index_uri(table_uri: str, index_id: str, suffix: str) -> str:
    return f"{table_uri.rstrip('/')}/{INDEX_DIR}/{index_id}.{suffix}"


def _load_npy(store: ObjectStore, uri: str) -> np.ndarray:
    return np.load(io.BytesIO(store.read_bytes(uri)), allow_pickle=False)


def run_build_task(task: BuildTask) -> BuildTaskResult:
    """Cluster the task's fragments: assign, write one fragment per partition, calibrate (worker side)."""
    t0 = time.time()
    store = ObjectStore(parse_location(task.table_uri, task.storage_options))
    centroids = _load_npy(store, _index_uri(task.table_uri, task.index_id, "centroids.npy"))
    calib = np.load(io.BytesIO(store.read_bytes(_index_uri(task.table_uri, task.index_id, "calib.npz"))))
    cq, cq_ids = calib["queries"], calib["ids"]
    model = IvfModel(centroids, task.metric)
    ds = open_dataset(task.data_uri, task.storage_options, task.read_version)
    sink = FragmentSink(task.data_uri, task.schema, task.storage_options, model, flush_bytes=task.flush_bytes,
                        max_rows_per_file=1 << 30)
    kc = CALIBRATION_K + 1
    best_d = np.full((len(cq), kc), np.inf, dtype=np.float32)
    best_p = np.full((len(cq), kc), -1, dtype=np.int32)
    best_i = np.full((len(cq), kc), -1, dtype=np.int64)
    cq_is_str = cq_ids.dtype.kind in "US"
    if cq_is_str:
        best_i = np.full((len(cq), kc), "", dtype=object)
    part_rows = np.zeros(model.nlist, dtype=np.int64)
    rows = 0
    cols = [f.name for f in task.schema if f.name != PARTITION_COLUMN]
    try:
        # Calibration runs on one helper thread, in batch order, overlapping the assignment of the next
        # batch and the final writes; at most two batches wait for it (bounded memory).
        calib = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakevec-calibrate")
        pending: list = []
        try:
            for batch in _task_batches(task, ds, cols):
                vec = np.ascontiguousarray(vectors_of(batch.column(VECTOR_COLUMN)), dtype=np.float32)
                parts = model.assign(vec)
                np.add.at(part_rows, parts, 1)
                sink.add(batch, vec, partitions=parts)
                rows += batch.num_rows
                if len(cq):
                    pending.append(calib.submit(_calibrate, cq, task.metric, vec, parts, batch.column(ID_COLUMN),
                                                best_d, best_p, best_i))
                    while len(pending) > 2:
                        pending.pop(0).result()
            written = sink.finish()
            for f in pending:
                f.result()
        finally:
            calib.shutdown(wait=True)
    except BaseException:
        delete_written(store, task.data_uri, sink.out)
        raise
    return BuildTaskResult(task.task_id, written, best_d, best_p, best_i, rows, time.time() - t0, part_rows)


_PREFETCHED: dict = {}  # task key -> Future of its batches (local engine: read while k-means trains)
_PROGRESS: dict = {}  # "hook": progress.advance of the running local build (tasks run in this process)


def _task_key(task: BuildTask) -> tuple:
    return (task.data_uri, task.read_version, tuple(task.fragment_ids), tuple(task.row_ranges))


def _read_task_batches(task: BuildTask, ds, cols: list[str]):
    pieces = [(ds.get_fragment(fid), None, None) for fid in task.fragment_ids]
    pieces += [(ds.get_fragment(fid), off, lim) for fid, off, lim in task.row_ranges]
    for fr, off, lim in pieces:
        yield from fr.to_batches(columns=cols, batch_size=65536, offset=off, limit=lim)


def _task_batches(task: BuildTask, ds, cols: list[str]):
    """Yield the task's rows: prefetched ones when the driver read them during training, else read now."""
    fut = _PREFETCHED.pop(_task_key(task), None)
    if fut is not None:
        try:
            batches = fut.result()
        except Exception:
            batches = None  # the prefetch failed: read again here, with the normal error handling
        if batches is not None:
            batches.reverse()
            while batches:  # drop each batch once handed over: the sink holds its own copy
                b = batches.pop()
                yield b
                _advance(b.num_rows)
            return
    for b in _read_task_batches(task, ds, cols):
        yield b
        _advance(b.num_rows)


def _advance(n: int) -> None:
    hook = _PROGRESS.get("hook")
    if hook is not None:
        hook(n)


def _start_prefetch(task: BuildTask):
    """Read a task's rows on a background thread (I/O overlaps the CPU-bound k-means); return the Future."""
    from concurrent.futures import ThreadPoolExecutor
    cols = [f.name for f in task.schema if f.name != PARTITION_COLUMN]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakevec-build-prefetch")

    def read():
        ds = open_dataset(task.data_uri, task.storage_options, task.read_version)
        return list(_read_task_batches(task, ds, cols))

    fut = pool.submit(read)
    pool.shutdown(wait=False)
    _PREFETCHED[_task_key(task)] = fut
    return fut


def _calibrate(cq, metric, vec, parts, ids_col, best_d, best_p, best_i) -> None:
    """Merge this batch's exact neighbours of the calibration queries into the running top-k."""
    kc = best_d.shape[1]
    d = distances(cq, vec, metric)
    loc, ld = topk_rows(d, min(kc, d.shape[1]))
    ids = np.asarray(ids_col.to_numpy(zero_copy_only=False))
    cat_d = np.concatenate([best_d, ld], axis=1)
    cat_p = np.concatenate([best_p, parts[loc]], axis=1)
    cat_i = np.concatenate([best_i, ids[loc].astype(best_i.dtype)], axis=1)
    sel, sd = topk_rows(cat_d, kc)
    best_d[:] = sd
    best_p[:] = np.take_along_axis(cat_p, sel, axis=1)
    best_i[:] = np.take_along_axis(cat_i, sel, axis=1)


def neighbour_ranks(model: IvfModel, cq: np.ndarray, parts: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
    """Return, for each query and each of its exact neighbours, the nprobe that finds it (1-based).

    ``parts`` (m, k): the partition of every neighbour (-1: an empty slot, never found); ``found`` (m, k),
    optional: neighbours scanned whatever nprobe is (unassigned rows), found at nprobe 1."""
    m, k = parts.shape
    if m == 0 or k == 0:
        return np.zeros((m, k), dtype=np.int64)
    ranks = np.empty((m, model.nlist), dtype=np.int64)
    ranks[np.arange(m)[:, None], model.rank_partitions(cq)] = np.arange(model.nlist)[None, :]
    safe = np.where(parts >= 0, parts, 0)
    needed = np.take_along_axis(ranks, safe, axis=1) + 1
    needed[parts < 0] = model.nlist + 1
    if found is not None:
        needed[found] = 1
    return needed


def curve_from_ranks(needed: np.ndarray, nlist: int) -> np.ndarray:
    """Return recall for nprobe = 1..nlist from ``neighbour_ranks`` output (all neighbours weigh the same)."""
    if needed.size == 0:
        return np.ones(nlist)
    counts = np.bincount(np.minimum(needed.ravel(), nlist + 1), minlength=nlist + 2)
    return np.cumsum(counts)[1:nlist + 1] / needed.size


def smallest_nprobe(curve: np.ndarray, target: float) -> int:
    """Return the smallest nprobe whose recall reaches ``target`` (all partitions if none does)."""
    reach = np.flatnonzero(np.asarray(curve) >= target)
    return int(reach[0] + 1) if len(reach) else len(curve)


def curve_points(curve: np.ndarray, default_nprobe: int) -> list:
    """Return the ``IndexMeta.recall_curve`` points: powers of two and the default nprobe."""
    nlist = len(curve)
    probes = sorted({p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, default_nprobe) if p <= nlist})
    return [[p, round(float(curve[p - 1]), 4)] for p in probes]


def recall_curve(model: IvfModel, cq: np.ndarray, cq_ids: np.ndarray, results: list[BuildTaskResult],
                 k: int = CALIBRATION_K) -> np.ndarray:
    """Return recall@k of IVF search for nprobe = 1..nlist, from the merged calibration top-k."""
    if len(cq) == 0:
        return np.ones(model.nlist)
    d = np.concatenate([r.calib_dist for r in results], axis=1)
    p = np.concatenate([r.calib_part for r in results], axis=1)
    i = np.concatenate([r.calib_ids for r in results], axis=1)
    order = np.argsort(d, axis=1, kind="stable")
    p = np.take_along_axis(p, order, axis=1)
    i = np.take_along_axis(i, order, axis=1)
    parts = np.full((len(cq), k), -1, dtype=np.int64)
    for qi in range(len(cq)):
        keep = [j for j in range(p.shape[1]) if p[qi, j] >= 0 and i[qi, j] != cq_ids[qi]][:k]
        parts[qi, :len(keep)] = p[qi, keep]
    return curve_from_ranks(neighbour_ranks(model, cq, parts), model.nlist)


def build_index(table, num_partitions: int | None = None, engine: str = "local", sample_rows: int | None = None,
                target_recall: float = CALIBRATION_TARGET_RECALL, seed: int = 1234,
                task_bytes: int | None = None, progress=None) -> IndexMeta:
    """Build the IVF index of ``table`` and rewrite it clustered by partition (see module doc).

    ``seed`` makes the build reproducible (sample, k-means, calibration queries); ``progress``: see
    ``lakevec.progress`` (phases sample, train, assign, commit)."""
    from ..progress import progress_for
    t0 = time.time()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    with progress_for(progress, "build_index") as p, WriteJob(table, "index") as job:
        if wait_while_running(table.store, table.loc, ("compact",), job.txn):  # compaction yields to this build
            job.refresh()  # read what the compactions that started first committed
        return _build(table, job, num_partitions, engine, sample_rows, target_recall, int(seed), task_bytes, t0, p)


def _build(table, job: WriteJob, num_partitions, engine, sample_rows, target_recall, seed, task_bytes, t0, p):
    ds = job.ds
    n = ds.count_rows()
    if n == 0:
        raise InvalidArgumentError(f"table {table.name!r} is empty: add rows before building an index")
    if num_partitions is None:
        nlist = default_num_partitions(n)
    else:
        if not isinstance(num_partitions, (int, np.integer)) or isinstance(num_partitions, bool) or num_partitions < 1:
            raise InvalidArgumentError(f"num_partitions must be a positive integer, got {num_partitions!r}")
        if num_partitions > n:
            raise InvalidArgumentError(f"num_partitions={num_partitions} exceeds the {n} rows of table {table.name!r}")
        nlist = int(num_partitions)
    rv = ds.version
    metric = table.meta.metric
    rng = np.random.default_rng(seed)
    n_train = min(n, sample_rows or nlist * KMEANS_MAX_POINTS_PER_CENTROID)
    n_cal = min(CALIBRATION_QUERIES, max(0, n - CALIBRATION_K - 1))
    # Calibration queries are table rows (their own match is excluded from the truth); they may
    # overlap the training sample, which only positions centroids.
    train_pos = np.sort(rng.choice(n, n_train, replace=False))
    cal_pos = np.sort(rng.choice(n, n_cal, replace=False))
    picks, inverse = np.unique(np.concatenate([train_pos, cal_pos]), return_inverse=True)
    p.phase("sample", total=len(picks), unit="rows")
    sample = ds.take(picks.tolist(), columns=[ID_COLUMN, VECTOR_COLUMN])
    p.advance(len(picks))
    vecs = np.ascontiguousarray(vectors_of(sample.column(VECTOR_COLUMN)), dtype=np.float32)
    sids = sample.column(ID_COLUMN).to_numpy(zero_copy_only=False)
    train_idx, cal_idx = inverse[:n_train], inverse[n_train:]
    t_sample = time.time() - t0
    old = [f.metadata for f in ds.get_fragments()]
    schema = ds.schema
    from ..engines import engine_name, get_engine, task_bytes_for
    if task_bytes is None:  # distributed engines: about one task per core (see engines.task_bytes_for)
        total = sum(int(df.file_size_bytes or 0) for fr in old for df in fr.files)
        task_bytes = task_bytes_for(engine, total, BUILD_TASK_BYTES)
    if engine_name(engine) == "local":
        # The local engine runs the tasks here, after training: read the first task's rows while
        # k-means (CPU-bound) runs, so the store's latency and bandwidth are hidden behind it.
        first = plan_build_tasks(table, ds, rv, "pending", schema, task_bytes)[:1]
        if first:
            _start_prefetch(first[0])
    p.phase("train", detail=f"k-means: {nlist:,} centroids on {len(train_idx):,} rows")
    try:
        centroids = train_kmeans(vecs[train_idx], nlist, metric, seed=seed)
    except BaseException:
        _PREFETCHED.clear()
        raise
    t_train = time.time() - t0 - t_sample
    model = IvfModel(centroids, metric)
    index_id = f"ivf-{rv:06d}-{new_id()[:12]}"
    cq = vecs[cal_idx]
    cq_ids = sids[cal_idx]
    if cq_ids.dtype == object:
        cq_ids = cq_ids.astype(str)
    job.track_index(index_id)
    _write_npy(table.store, _index_uri(table.loc.uri, index_id, "centroids.npy"), centroids)
    buf = io.BytesIO()
    np.savez(buf, queries=cq, ids=cq_ids)
    table.store.write_bytes(_index_uri(table.loc.uri, index_id, "calib.npz"), buf.getvalue())

    tasks = plan_build_tasks(table, ds, rv, index_id, schema, task_bytes)
    p.phase("assign", total=n, unit="rows", detail=f"{len(tasks)} task(s) on {engine_name(engine)}")
    eng = get_engine(engine)
    try:
        if engine_name(engine) == "local":  # one task at a time: progress per batch (see _task_batches)
            results = []
            _PROGRESS["hook"] = p.advance
            for task in tasks:
                results += eng.map(run_build_task, [task], name="build_index")
        else:
            results = eng.map(run_build_task, tasks, name="build_index")
            p.advance(sum(r.rows for r in results))
    finally:
        _PREFETCHED.clear()  # never keep rows of a failed or finished build in memory
        _PROGRESS.clear()
    written = WrittenFiles()
    for r in sorted(results, key=lambda r: r.task_id):
        written.extend(r.written)
        job.track(r.written)
    if written.rows != n:
        raise LakevecError(f"index build of table {table.name!r} wrote {written.rows} rows, expected {n}")
    curve = recall_curve(model, cq, cq_ids, results)
    default_nprobe = smallest_nprobe(curve, target_recall)
    sizes = np.sum([r.partition_rows for r in results], axis=0)
    meta = IndexMeta(index_id, metric, table.meta.dim, nlist, rv, None, [int(s) for s in sizes],
                     default_nprobe, curve_points(curve, default_nprobe), len(train_idx), 0.0, time.time())
    meta.stats = {"sample_seconds": round(t_sample, 3), "train_seconds": round(t_train, 3),
                  "tasks": len(tasks), "engine": engine_name(engine), "seed": seed}
    meta.build_seconds = round(time.time() - t0, 3)
    table.files.write_index(meta, None, centroids)
    op = lance.LanceOperation.Rewrite([lance.LanceOperation.RewriteGroup(old, written.fragments)], [])
    change = Change(op="index", operation=op, files=dict(written.partitions), index_id=index_id, index=meta,
                    removed=[file_path(df) for fr in old for df in fr.files],
                    info={"rows": int(written.rows), "bytes": int(written.bytes)})
    p.phase("commit", detail=f"{written.rows:,} rows in {len(written.fragments):,} fragments")
    res = job.commit(change, job.state, f"committing the index of table {table.name!r}")
    meta.data_version = res.version
    meta.build_seconds = round(time.time() - t0, 3)
    return meta


def plan_build_tasks(table, ds, read_version: int, index_id: str, schema: pa.Schema,
                     task_bytes: int = BUILD_TASK_BYTES) -> list[BuildTask]:
    """Group the version's fragments into tasks of about ``task_bytes`` of data each; a fragment bigger than
    that is cut into row ranges of its own (so that distributed engines get parallel tasks)."""
    groups: list[list[int]] = [[]]
    ranges: list[tuple] = []
    acc = 0
    for fr in ds.get_fragments():
        size = sum(int(df.file_size_bytes or 0) for df in fr.metadata.files)
        if size > task_bytes and task_bytes < BUILD_TASK_BYTES:
            rows = fr.count_rows()
            n = min(-(-size // task_bytes), max(rows, 1))
            step = -(-rows // n) if rows else 0
            ranges += [((fr.fragment_id, off, min(step, rows - off)),) for off in range(0, rows, step or 1)]
            continue
        if groups[-1] and acc + size > task_bytes:
            groups.append([])
            acc = 0
        groups[-1].append(fr.fragment_id)
        acc += size
    # tasks buffer up to BUILD_TASK_BYTES before writing: one fragment per partition and task
    flush = max(task_bytes, BUILD_TASK_BYTES)
    work = [(tuple(g), ()) for g in groups if g] + [((), r) for r in ranges]
    return [BuildTask(i, table.loc.uri, table.data_uri, table.lake.lance_options, read_version, fids, index_id,
                      table.meta.metric, schema, flush, rr)
            for i, (fids, rr) in enumerate(work)]


def _write_npy(store: ObjectStore, uri: str, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    store.write_bytes(uri, buf.getvalue())
