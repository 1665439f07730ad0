"""How healthy is a table's IVF index? The measurements behind ``optimize`` (read-only).

- **Imbalance** (from the partition map, no data read): largest partition / mean partition, and the share
  of rows held by the 1% largest partitions.
- **Unassigned rows**: rows of data files that no partition of the index in force covers (appends that
  raced an index build, other Lance writers); every query scans them.
- **Drift**: recall@10 at the index's default nprobe for a sample of *recent* rows (rows of data files
  written after the index was put in force) used as queries, against exact search over the whole
  table; and the same for a sample of all rows. Recall at any nprobe follows from where each exact
  neighbour lives: neighbour j of query q is found at nprobe n iff its partition is among the n
  centroids nearest q (unassigned rows are always found), as in the build's calibration.

One pass over the table (``MeasureTask`` records, run by any engine) computes the exact top-k of the
sample queries, keeping each neighbour's vector and partition (so recall under *another* partitioning,
e.g. the one ``optimize`` is about to commit, follows without reading the table again), the radius of
every partition (how far its farthest row is from its centroid, which bounds which rows a new
centroid can take), and a uniform sample of rows with their partitions (the planner's training data).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..config import CALIBRATION_K, ID_COLUMN, INDEX_DIR, UNASSIGNED, VECTOR_COLUMN
from ..index.build import curve_from_ranks, neighbour_ranks
from ..index.ivf import IvfModel
from ..search.kernels import distances, sq_norms, topk_rows
from ..search.reader import vectors_of
from ..store.lance_io import open_dataset
from ..store.location import parse_location
from ..store.objects import ObjectStore

EMPTY = -2  # partition of an empty neighbour slot (fewer rows than k)
RECENT_QUERIES = 200  # recent rows used as drift queries
ALL_QUERIES = 200  # rows of the whole table used as queries (2x the build's calibration: the estimate is steadier)
MIN_RECENT_QUERIES = 10  # fewer recent rows than this: drift is judged on the sample of all rows
SAMPLE_PER_TARGET_PARTITION = 128  # planner sample: rows per partition of the target size
SAMPLE_MAX_ROWS = 262_144  # cap on the planner sample (bounds the driver's memory)
MEASURE_TASK_BYTES = 256 << 20  # data one measure task reads (local engine; distributed: about one per core)


def balance(sizes) -> dict:
    """Return the imbalance figures of partition sizes: largest / mean, share of the 1% largest, ..."""
    s = np.asarray(sizes, dtype=np.int64)
    n, k = int(s.sum()), len(s)
    if k == 0 or n == 0:
        return {"partitions": k, "rows": n, "largest": 0, "smallest": 0, "mean": 0.0, "largest_over_mean": 0.0,
                "top1pct_partitions": 0, "top1pct_share": 0.0, "empty_partitions": k}
    top = max(1, math.ceil(k / 100))
    mean = n / k
    return {"partitions": k, "rows": n, "largest": int(s.max()), "smallest": int(s.min()), "mean": round(mean, 1),
            "largest_over_mean": round(float(s.max() / mean), 3), "top1pct_partitions": top,
            "top1pct_share": round(float(np.sort(s)[::-1][:top].sum() / n), 4),
            "empty_partitions": int((s == 0).sum())}


@dataclass(frozen=True)
class MeasureTask:
    """Read some fragments of one version: exact top-k of the sample queries, radii, a row sample."""

    task_id: int
    table_uri: str
    data_uri: str
    storage_options: dict | None
    version: int
    fragments: tuple  # ((fragment id, partition or UNASSIGNED), ...)
    index_id: str | None
    metric: str
    queries: np.ndarray
    k: int  # neighbours kept per query (k + 1: the query row itself is among them)
    sample_rate: float
    seed: int


@dataclass
class Neighbours:
    """Running exact top-k of some queries, with each neighbour's id, partition and vector."""

    dist: np.ndarray  # (m, k) float32, inf = empty
    ids: np.ndarray  # (m, k) int64 or object
    parts: np.ndarray  # (m, k) int32: partition, UNASSIGNED, or EMPTY
    vecs: np.ndarray  # (m, k, dim) float32

    @classmethod
    def empty(cls, m: int, k: int, dim: int, string_ids: bool) -> Neighbours:
        ids = np.full((m, k), "", dtype=object) if string_ids else np.full((m, k), -1, dtype=np.int64)
        return cls(np.full((m, k), np.inf, dtype=np.float32), ids, np.full((m, k), EMPTY, dtype=np.int32),
                   np.zeros((m, k, dim), dtype=np.float32))

    def merge(self, dist, ids, parts, vecs) -> None:
        """Merge candidates (m, c) into the running top-k."""
        k = self.dist.shape[1]
        cd = np.concatenate([self.dist, dist], axis=1)
        sel, sd = topk_rows(cd, min(k, cd.shape[1]))
        self.ids = np.take_along_axis(np.concatenate([self.ids, ids.astype(self.ids.dtype)], axis=1), sel, axis=1)
        self.parts = np.take_along_axis(np.concatenate([self.parts, parts], axis=1), sel, axis=1)
        cv = np.concatenate([self.vecs, vecs], axis=1)
        self.vecs = np.take_along_axis(cv, sel[:, :, None], axis=1)
        self.dist = sd

    def without_self(self, query_ids: np.ndarray, k: int) -> Neighbours:
        """Drop each query's own row (queries are table rows); keep the k nearest others."""
        m = self.dist.shape[0]
        out = Neighbours.empty(m, k, self.vecs.shape[2], self.ids.dtype == object)
        for q in range(m):
            keep = [j for j in range(self.dist.shape[1])
                    if self.parts[q, j] != EMPTY and self.ids[q, j] != query_ids[q]][:k]
            n = len(keep)
            out.dist[q, :n], out.ids[q, :n] = self.dist[q, keep], self.ids[q, keep]
            out.parts[q, :n], out.vecs[q, :n] = self.parts[q, keep], self.vecs[q, keep]
        return out


@dataclass
class MeasureResult:
    task_id: int
    neighbours: Neighbours
    radius: dict  # partition -> distance of its farthest row from its centroid (l2/cosine tables)
    sample_vec: np.ndarray
    sample_part: np.ndarray
    sample_frag: np.ndarray
    rows: int = 0


def _centroids(store: ObjectStore, table_uri: str, index_id: str) -> np.ndarray:
    raw = store.read_bytes(f"{table_uri.rstrip('/')}/{INDEX_DIR}/{index_id}.centroids.npy")
    return np.load(io.BytesIO(raw), allow_pickle=False)


def run_measure_task(task: MeasureTask) -> MeasureResult:
    """Engine task: stream the task's fragments once (see the module docstring)."""
    ds = open_dataset(task.data_uri, task.storage_options, task.version)
    cents = None
    if task.index_id is not None and task.metric != "dot":
        cents = _centroids(ObjectStore(parse_location(task.table_uri, task.storage_options)), task.table_uri,
                           task.index_id)
    q = task.queries
    string_ids = ds.schema.field(ID_COLUMN).type in (pa.string(), pa.large_string())
    nb = Neighbours.empty(len(q), task.k, q.shape[1], string_ids)
    radius: dict[int, float] = {}
    sv, sp, sf = [], [], []
    rows = 0
    for fid, part in task.fragments:
        fr = ds.get_fragment(fid)
        for bi, batch in enumerate(fr.to_batches(columns=[ID_COLUMN, VECTOR_COLUMN], batch_size=65536)):
            n = batch.num_rows
            if n == 0:
                continue
            rows += n
            vec = np.ascontiguousarray(vectors_of(batch.column(VECTOR_COLUMN)), dtype=np.float32)
            if len(q):
                d = distances(q, vec, task.metric)
                loc, ld = topk_rows(d, min(task.k, n))
                ids = np.asarray(batch.column(ID_COLUMN).to_numpy(zero_copy_only=False))
                nb.merge(ld, ids[loc], np.full(loc.shape, part, dtype=np.int32), vec[loc])
            if cents is not None and part >= 0:
                c = cents[part]
                d2 = sq_norms(vec) - 2.0 * (vec @ c) + float(c @ c)
                radius[part] = max(radius.get(part, 0.0), float(np.sqrt(max(float(d2.max()), 0.0))))
            if task.sample_rate > 0:
                rng = np.random.default_rng([task.seed, fid, bi])
                pick = np.flatnonzero(rng.random(n) < task.sample_rate)
                if len(pick):
                    sv.append(vec[pick])
                    sp.append(np.full(len(pick), part, dtype=np.int32))
                    sf.append(np.full(len(pick), fid, dtype=np.int64))
    dim = q.shape[1]
    return MeasureResult(task.task_id, nb, radius,
                         np.concatenate(sv) if sv else np.zeros((0, dim), np.float32),
                         np.concatenate(sp) if sp else np.zeros(0, np.int32),
                         np.concatenate(sf) if sf else np.zeros(0, np.int64), rows)


@dataclass
class Measurement:
    """What the measuring pass found about one version (see the module docstring)."""

    version: int
    rows: int
    table_bytes: int
    sizes: np.ndarray  # rows per partition of the index in force
    unassigned_rows: int
    recent_rows: int | None  # rows written after the index was put in force (None: unknown)
    queries: np.ndarray  # (m, dim): the recent queries first, then the sample of all rows
    query_ids: np.ndarray
    recent: np.ndarray  # (m,) bool: query taken from the recent rows
    neighbours: Neighbours  # exact top-k of every query, itself excluded
    radius: dict
    sample_vec: np.ndarray
    sample_part: np.ndarray
    sample_frag: np.ndarray
    sample_rate: float
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)


def recent_files(table, state) -> set | None:
    """Return the data files of the version that put the index in force (None if that version is gone)."""
    if state is None or state.index_version is None:
        return None
    from ..errors import LakevecError
    try:
        ds = table._open_version(state.index_version)
    except LakevecError:  # vacuumed: every row counts as recent
        return None
    return {fr.metadata.files[0].path for fr in ds.get_fragments() if fr.metadata.files}


def _pick(rng, positions: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or len(positions) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng.choice(positions, min(n, len(positions)), replace=False))


def recent_rows(snap, old_files: set | None) -> int | None:
    """Rows of ``snap`` in data files that the version putting the index in force did not have (None: unknown)."""
    if old_files is None:
        return None
    return int(sum(f.num_rows for f in snap.fragments if f.file not in old_files))


def measure(table, snap, target_rows: float, engine="local", seed: int = 1234, progress=None,
            recent_queries: int = RECENT_QUERIES, all_queries: int = ALL_QUERIES,
            sample: bool = True, old_files=False) -> Measurement:
    """Measure version ``snap`` of ``table`` (one read of every fragment; see the module docstring).
    ``old_files``: the files of the version that put the index in force (``recent_files``), if known."""
    import time
    t0 = time.time()
    ds = snap.ds
    frags = list(snap.fragments)
    n = sum(f.num_rows for f in frags)
    starts = np.cumsum([0] + [f.num_rows for f in frags])
    old = old_files if old_files is not False else (recent_files(table, snap.state) if snap.index else None)
    recent_pos = (np.concatenate([np.arange(starts[i], starts[i + 1]) for i, f in enumerate(frags)
                                  if f.file not in old] or [np.zeros(0, np.int64)]) if old is not None else None)
    k = min(CALIBRATION_K, max(0, n - 1))
    rng = np.random.default_rng(seed)
    rq = _pick(rng, recent_pos, recent_queries) if recent_pos is not None else np.zeros(0, np.int64)
    aq = _pick(rng, np.arange(n), min(all_queries, max(0, n - k - 1)) if k else 0)
    picks = np.concatenate([rq, aq])
    dim = table.meta.dim
    if len(picks):
        tbl = ds.take(picks.tolist(), columns=[ID_COLUMN, VECTOR_COLUMN])
        queries = np.ascontiguousarray(vectors_of(tbl.column(VECTOR_COLUMN)), dtype=np.float32)
        qids = np.asarray(tbl.column(ID_COLUMN).to_numpy(zero_copy_only=False))
    else:
        queries, qids = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    rate = 0.0
    if sample and snap.index is not None and n:
        rate = min(1.0, SAMPLE_PER_TARGET_PARTITION / max(target_rows, 1.0), SAMPLE_MAX_ROWS / n)
    index_id = snap.index.index_id if snap.index is not None else None
    from ..engines import task_bytes_for
    groups = group_by_bytes(frags, task_bytes_for(engine, sum(f.file_size for f in frags), MEASURE_TASK_BYTES))
    tasks = [MeasureTask(i, table.loc.uri, table.data_uri, table.lake.lance_options, snap.version,
                         tuple((f.fragment_id, f.partition) for f in g), index_id, table.meta.metric, queries, k + 1,
                         rate, seed) for i, g in enumerate(groups)]
    if progress is not None:
        progress.phase("measure", total=n, unit="rows",
                       detail=f"exact top-{k} of {len(picks)} sample rows ({len(rq)} recent), {len(tasks)} task(s)")
    results = run_tasks(engine, run_measure_task, tasks, "optimize (measure)", progress, lambda r: r.rows)
    nb = Neighbours.empty(len(queries), k + 1, dim, qids.dtype == object)
    radius: dict = {}
    for r in results:
        nb.merge(r.neighbours.dist, r.neighbours.ids, r.neighbours.parts, r.neighbours.vecs)
        for p, x in r.radius.items():
            radius[p] = max(radius.get(p, 0.0), x)
    recent_mask = np.zeros(len(picks), dtype=bool)
    recent_mask[:len(rq)] = True
    sizes = snap.partition_rows() if snap.index is not None else np.zeros(0, np.int64)
    return Measurement(
        snap.version, n, sum(f.file_size for f in frags), sizes, sum(f.num_rows for f in snap.unassigned),
        None if recent_pos is None else int(len(recent_pos)), queries, qids, recent_mask,
        nb.without_self(qids, k), radius,
        np.concatenate([r.sample_vec for r in results]) if results else np.zeros((0, dim), np.float32),
        np.concatenate([r.sample_part for r in results]) if results else np.zeros(0, np.int32),
        np.concatenate([r.sample_frag for r in results]) if results else np.zeros(0, np.int64),
        rate, round(time.time() - t0, 3))


def group_by_bytes(frags: list, task_bytes: int) -> list[list]:
    """Split fragments (FragmentInfo) into consecutive groups of about ``task_bytes`` each."""
    groups: list[list] = [[]]
    acc = 0
    for f in frags:
        if groups[-1] and acc + f.file_size > task_bytes:
            groups.append([])
            acc = 0
        groups[-1].append(f)
        acc += f.file_size
    return [g for g in groups if g]


def run_tasks(engine, fn, tasks: list, name: str, progress=None, rows_of=None, on_result=None) -> list:
    """Run task records on ``engine``; results in task order. The local engine runs them one at a time, so
    that progress moves per task and ``on_result`` (e.g. remembering files to delete on failure) sees each
    result before the next task starts; distributed engines get them all at once (they run in parallel)."""
    from ..engines import engine_name, get_engine
    eng = get_engine(engine)
    batches = [tasks] if engine_name(engine) != "local" else [[t] for t in tasks]
    results = []
    for batch in batches:
        got = eng.map(fn, batch, name=name) if batch else []
        for r in got:
            if on_result is not None:
                on_result(r)
            if progress is not None and rows_of is not None:
                progress.advance(rows_of(r))
        results += got
    return results


def recall_by_nprobe(model: IvfModel, queries: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Recall for nprobe = 1..nlist of queries whose exact neighbours live in ``parts`` (UNASSIGNED: always
    scanned, EMPTY: no neighbour)."""
    if len(queries) == 0:
        return np.ones(model.nlist)
    found = parts == UNASSIGNED
    p = np.where(parts == EMPTY, -1, parts)
    return curve_from_ranks(neighbour_ranks(model, queries, p, found), model.nlist)


def recall_at(model: IvfModel, queries: np.ndarray, parts: np.ndarray, nprobe: int) -> float | None:
    """Recall@k at ``nprobe``, or None without queries."""
    if len(queries) == 0:
        return None
    curve = recall_by_nprobe(model, queries, parts)
    return round(float(curve[min(max(nprobe, 1), model.nlist) - 1]), 4)


def drift(m: Measurement, model: IvfModel, parts: np.ndarray, nprobe: int) -> dict:
    """Recall@k at ``nprobe`` for the recent queries and for the sample of all rows, given the partition of
    every exact neighbour (``parts``, aligned with ``m.neighbours``)."""
    r = m.recent
    return {"recent": recall_at(model, m.queries[r], parts[r], nprobe),
            "all": recall_at(model, m.queries[~r], parts[~r], nprobe),
            "recent_queries": int(r.sum()), "all_queries": int((~r).sum()), "nprobe": int(nprobe)}


__all__ = ["balance", "measure", "recent_files", "recent_rows", "group_by_bytes", "run_tasks", "Measurement", "MeasureTask", "run_measure_task", "recall_by_nprobe", "recall_at",
           "drift", "Neighbours", "EMPTY"]
