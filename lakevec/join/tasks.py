"""The task functions of a join and their records: the same functions run under local, Ray and Spark.

Records are small frozen dataclasses (URIs, a version, bucket ranges, section offsets); storage options are
carried but never printed. Every task opens what it needs itself: the right table pinned at the join's
version (once per worker process), its scratch files, and returns a small picklable result (section
indexes, counts, I/O counters, the rows of the recall sample).

Phases (see ``lakevec.join`` for the whole picture):

1. ``run_assign_task`` (one per left shard): read and validate the rows, probe the centroids (one GEMM),
   write them to buckets (``shuffle``: once per probed partition; ``grouped``: once, in the bucket of the
   nearest partition, with the probe list), plus recall-sample candidates and the left columns.
2. ``run_score_task`` (one per range of buckets): read the task's left rows, read each right partition it
   needs once (cache first), score all its left rows with one GEMM per block, keep the top-k (or all pairs
   within the radius) and the exact results of the recall sample on the partitions the task owns.
3. ``run_merge_task`` (``shuffle`` plan, one per group of left rows): merge the partial results per left row.
4. ``run_dedup_task`` (self-join dedup, one per pair bucket): keep every unordered pair once.
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import uuid
from collections import OrderedDict
from types import SimpleNamespace
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..search.executor import Visit, plan_visits
from ..search.kernels import partial_scores, scaled_queries, sq_norms
from ..search.reader import vectors_of
from ..search.schedule import run_pipeline, single_threaded_blas
from .merge import (HeapTopK, RangeAcc, Registry, concat, dedup_pairs, finalize, keep_best, pair_bucket,
                    pairs_table, ref_bucket)
from .plan import JoinParams, priorities
from .scratch import ScratchSpec, SectionIndex, SectionWriter, read_sections, scratch_store
from .right import RightSpec, _RightState, register_right, right_state, unregister_right  # noqa: F401
from .sources import LeftShard, iter_shard


# --------------------------------------------------------------------------------------------------
# job-wide arrays written by the driver to scratch (bucket order, recall sample, right filter)
# --------------------------------------------------------------------------------------------------

_ARRAYS: OrderedDict = OrderedDict()


def save_arrays(scratch: ScratchSpec, name: str, **arrays) -> str:
    uri = scratch.join(name)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    scratch_store(scratch).write_bytes(uri, buf.getvalue())
    return uri


def load_arrays(scratch: ScratchSpec, uri: str | None) -> dict:
    if uri is None:
        return {}
    key = (uri, os.getpid())
    got = _ARRAYS.get(key)
    if got is None:
        with np.load(io.BytesIO(scratch_store(scratch).read_bytes(uri)), allow_pickle=False) as z:
            got = {k: z[k] for k in z.files}
        _ARRAYS[key] = got
        while len(_ARRAYS) > 8:
            _ARRAYS.popitem(last=False)
    return got


def _io_before(**stores) -> dict:
    return {name: (st, st.counters.snapshot()) for name, st in stores.items()}


def _io_delta(before: dict) -> dict:
    """{"right": IOSnapshot, "scratch": IOSnapshot} of what a task did (the same stores may serve several
    labels only if they are distinct objects: every label is measured on its own store)."""
    return {name: st.counters.snapshot() - snap for name, (st, snap) in before.items()}


@contextlib.contextmanager
def _kernel_threads():
    """BLAS and faiss on one thread inside the scoring threads (parallelism comes from the threads)."""
    from . import merge
    f = merge._faiss
    old = f.omp_get_max_threads() if f is not None else None
    if f is not None:
        f.omp_set_num_threads(1)
    try:
        with single_threaded_blas():
            yield
    finally:
        if f is not None:
            f.omp_set_num_threads(old)


# --------------------------------------------------------------------------------------------------
# phase 1: assign left rows to buckets
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AssignTask:
    task_id: int
    shard: LeftShard
    right: RightSpec
    scratch: ScratchSpec
    params: JoinParams
    plan_uri: str
    has_unassigned: bool = False


@dataclass
class AssignResult:
    task_id: int
    shard: int
    rows: int
    index: SectionIndex | None
    counts: np.ndarray  # rows per bucket position
    sample_pri: np.ndarray
    sample_refs: np.ndarray
    id_type: str | None
    seconds: float
    io: dict
    max_ref: int = 0


def _rows_table(refs, ids, x, rows, probes=None) -> pa.Table:
    d = x.shape[1]
    sub = x[rows]
    cols = {"_ref": pa.array(refs[rows]), "_id": ids.take(pa.array(rows)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(sub.ravel()), d)}
    if probes is not None:
        pr = probes[rows].astype(np.int32)
        cols["_probes"] = pa.FixedSizeListArray.from_arrays(pa.array(pr.ravel()), pr.shape[1])
    return pa.table(cols)


def _id_type(ids: pa.Array) -> str:
    return "int64" if pa.types.is_integer(ids.type) else "string"


PROBE_CHUNK = 8192  # rows probed per GEMM against the centroids (bounds the (rows x nlist) score matrix)


def probe_rows(model, x: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``nprobe`` nearest partitions of every row, in chunks (memory: PROBE_CHUNK x nlist scores)."""
    if len(x) <= PROBE_CHUNK:
        return model.probe(x, nprobe)
    return np.concatenate([model.probe(x[s:s + PROBE_CHUNK], nprobe) for s in range(0, len(x), PROBE_CHUNK)])


def assign_rows(batches, shard_index: int, right: RightSpec, scratch: ScratchSpec, params: JoinParams,
                plan_uri: str, has_unassigned: bool, task_id: int) -> AssignResult:
    """Phase 1 on an iterable of LeftBatches (a shard, or a Spark/Ray partition)."""
    t0 = time.time()
    st = right_state(right)
    store = scratch_store(scratch)
    before = _io_before(scratch=store, right=st.table.store)
    plan = load_arrays(scratch, plan_uri)
    pos_of = plan["pos_of"]
    nlist = len(pos_of)
    ids_l, x_l, ref_l, extra_l = [], [], [], []
    for b in batches:
        ids_l.append(b.ids)
        x_l.append(b.vectors)
        ref_l.append(b.refs)
        if b.extra is not None:
            extra_l.append(b.extra)
    empty = np.zeros(0)
    if not x_l or sum(len(x) for x in x_l) == 0:
        return AssignResult(task_id, shard_index, 0, None, np.zeros(nlist, dtype=np.int64), empty, empty.astype(np.int64),
                            None, time.time() - t0, _io_delta(before))
    types = {a.type for a in ids_l}
    if len(types) > 1:
        from ..errors import SchemaError
        raise SchemaError(f"left shard {shard_index}: id column changes type between batches ({types})")
    ids = pa.concat_arrays(ids_l) if len(ids_l) > 1 else ids_l[0]
    x = np.concatenate(x_l) if len(x_l) > 1 else x_l[0]
    refs = np.concatenate(ref_l) if len(ref_l) > 1 else ref_l[0]
    m = len(x)
    probes = probe_rows(st.snap.model, x, params.nprobe)
    w = SectionWriter(store, scratch.join("p1", f"t{task_id:06d}-{uuid.uuid4().hex[:8]}.lvs"))  # per attempt
    try:
        if params.plan == "shuffle":
            pos = pos_of[probes].ravel()
            rows = np.repeat(np.arange(m), probes.shape[1])
            order = np.lexsort((rows, pos))
            pos, rows = pos[order], rows[order]
            counts = np.bincount(pos, minlength=nlist).astype(np.int64)
            cuts = np.r_[0, np.flatnonzero(np.diff(pos)) + 1, len(pos)]
            for a, b in zip(cuts[:-1], cuts[1:]):
                w.add(int(pos[a]), _rows_table(refs, ids, x, rows[a:b]))
            if has_unassigned:
                w.add("u", _rows_table(refs, ids, x, np.arange(m)))
        else:
            pos = pos_of[probes[:, 0]]
            order = np.argsort(pos, kind="stable")
            pos_s = pos[order]
            counts = np.bincount(pos, minlength=nlist).astype(np.int64)
            cuts = np.r_[0, np.flatnonzero(np.diff(pos_s)) + 1, len(pos_s)]
            for a, b in zip(cuts[:-1], cuts[1:]):
                w.add(int(pos_s[a]), _rows_table(refs, ids, x, order[a:b], probes))
        pri = priorities(refs, params.seed)
        s = min(params.sample_size, m)
        if s:
            sel = np.argpartition(pri, s - 1)[:s] if s < m else np.arange(m)
            sel = sel[np.argsort(pri[sel])]
            w.add("s", _rows_table(refs, ids, x, sel))
            spri, srefs = pri[sel], refs[sel]
        else:
            spri, srefs = empty, empty.astype(np.int64)
        if extra_l:
            extra = pa.concat_tables(extra_l) if len(extra_l) > 1 else extra_l[0]
            w.add("c", extra.add_column(0, "_ref", pa.array(refs)))
        index = w.close()
    except BaseException:
        w.abort()
        raise
    return AssignResult(task_id, shard_index, m, index, counts, spri, srefs, _id_type(ids), time.time() - t0,
                        _io_delta(before), int(refs.max()))


def run_assign_task(task: AssignTask) -> AssignResult:
    """Phase 1 for one left shard."""
    p = task.params
    return assign_rows(iter_shard(task.shard, p.dim, p.metric), task.shard.index, task.right, task.scratch, p,
                       task.plan_uri, task.has_unassigned, task.task_id)


# --------------------------------------------------------------------------------------------------
# phase 2: score
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreTask:
    task_id: int
    right: RightSpec
    scratch: ScratchSpec
    params: JoinParams
    plan_uri: str
    lo: int  # bucket positions [lo, hi) (partitions order[lo:hi])
    hi: int
    inputs: tuple  # ((scratch uri, ((key, offset, length, rows), ...)), ...)
    sample_uri: str | None = None
    sample_owner: bool = False  # score the recall sample on the partitions of [lo, hi)
    sample_unassigned: bool = False  # ... and on the unassigned fragments
    unassigned: bool = False  # visit the unassigned fragments with every left row of the task
    final: object = None  # output.FinalSpec when this task's results are final (grouped plan)
    filter_uri: str | None = None  # allowed right row addresses (right_filter)


@dataclass
class ScoreResult:
    task_id: int
    rows: int
    index: SectionIndex | None = None  # partial results by merge group / pairs by dedup bucket
    part: object = None  # output.PartInfo of a final part
    sample_exact: pa.Table | None = None  # pairs of the recall sample (refs = sample refs)
    sample_found: pa.Table | None = None  # final pairs of sample rows (grouped plan)
    partitions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # partitions read
    stats: dict = field(default_factory=dict)
    io: dict = field(default_factory=dict)
    seconds: float = 0.0
    capped: int = 0
    rows_out: int = 0


def _task_inputs(store, inputs) -> dict:
    """Read the sections of every input file; return {key: [tables in input order]}."""
    got: dict = {}
    for uri, secs in inputs:
        idx = SectionIndex(uri, {str(k): (o, n, r) for k, o, n, r in secs})
        for key, t in read_sections(store, idx, [k for k, *_ in secs]).items():
            got.setdefault(key, []).append(t)
    return got


def _allowed_mask(allowed: np.ndarray):
    def mask_for(frag, tbl):
        addr = tbl.column("_rowaddr").to_numpy().astype(np.uint64)
        if len(allowed) == 0:
            return np.zeros(len(addr), dtype=bool)
        pos = np.searchsorted(allowed, addr)
        pos[pos == len(allowed)] = 0
        return allowed[pos] == addr
    return mask_for


def _query_block(rows: int) -> int:
    return int(max(16, min(4096, (32 << 20) // max(1, rows * 4))))


def _distances(scores: np.ndarray, qn: np.ndarray | None, metric: str) -> np.ndarray:
    if metric == "l2":
        return np.maximum(scores + qn, 0.0).astype(np.float32)
    if metric == "cosine":
        return (scores + 1.0).astype(np.float32)
    return scores.astype(np.float32)


def score_queries(st: _RightState, q: np.ndarray, visits: list, params: JoinParams, mask_for=None):
    """Score queries ``q`` on the visits; return (state, Registry of the right rows scored, stats, q norms)."""
    metric = params.metric
    m = len(q)
    qs = scaled_queries(q, metric)
    qn = sq_norms(q) if metric == "l2" else None
    cands = Registry()
    lock = threading.Lock()
    stats = {"partitions_read": 0, "fragments_read": 0, "rows_read": 0, "distances": 0}
    if params.range_only:
        cap = params.cap + (1 if params.self_join else 0) + 1  # one more than kept: the final step sees overflow

        def make():
            return RangeAcc(m, cap, params.radius, metric, qn)
    else:
        def make():
            return HeapTopK(m, params.kk)

    def read(v: Visit):
        return st.reader.read_block(v.fragments, v.key, mask_for)

    def score(v: Visit, block, state):
        n = len(block) if block is not None else 0
        with lock:
            stats["partitions_read"] += 1 if v.key >= 0 else 0
            stats["fragments_read"] += len(v.fragments)
            stats["rows_read"] += n
            stats["distances"] += n * len(v.queries)
        if not n:
            return
        base = cands.add(block)
        xn = sq_norms(block.vectors) if metric == "l2" else None
        qb = _query_block(n)
        qidx = np.asarray(v.queries, dtype=np.int64)
        for s in range(0, len(qidx), qb):
            qi = qidx[s:s + qb]
            sc = partial_scores(qs[qi], block.vectors, metric, x_norms=xn)
            if params.range_only:
                state.add(qi, sc, base, q[qi], block.vectors, xn)
            else:
                state.add(qi, sc, base)

    workers = max(1, params.threads)
    io_threads = max(1, params.io_threads)
    if workers == 1 and len(visits) <= 1:
        io_threads = 1
    with _kernel_threads():
        states = run_pipeline(visits, read, score, make, workers, io_threads)
    state = states[0] if states else make()
    for other in states[1:]:
        state.merge_from(other)
    return state, cands, stats, qn


def results_of(state, cands: Registry, qn, metric: str, rows: np.ndarray | None = None):
    """Return (query index, right ids, right row addresses, distances) of every kept pair (queries ``rows``
    only, when given)."""
    if isinstance(state, RangeAcc):
        qi, ref, sc = state.compact()
        if rows is not None:
            keep = np.isin(qi, rows)
            qi, ref, sc = qi[keep], ref[keep], sc[keep]
    else:
        d, r = state.sorted()
        if rows is not None:
            d, r = d[rows], r[rows]
            base_rows = rows
        else:
            base_rows = np.arange(len(d))
        qq, jj = np.nonzero(r >= 0)
        qi, ref, sc = base_rows[qq], r[qq, jj], d[qq, jj]
    if not len(qi):
        return qi, pa.array([], pa.int64()), np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32)
    ids, addr = cands.resolve(ref)
    if isinstance(state, RangeAcc):  # range distances are computed exactly already
        return qi, ids, addr, sc.astype(np.float32)
    dist = _distances(sc, qn[qi] if qn is not None else None, metric)
    return qi, ids, addr, dist


def run_score_task(task: ScoreTask) -> ScoreResult:
    """Phase 2 for one range of buckets (see the module docstring)."""
    t0 = time.time()
    p = task.params
    st = right_state(task.right)
    snap = st.snap
    store = scratch_store(task.scratch)
    before = _io_before(scratch=store, right=st.table.store)
    plan = load_arrays(task.scratch, task.plan_uri)
    order = plan["order"]
    got = _task_inputs(store, task.inputs)
    # left rows, in bucket order (shuffle: each bucket's rows are one contiguous range)
    pieces, ranges, r0 = [], [], 0
    keys = [str(pos) for pos in range(task.lo, task.hi)] + (["u"] if task.unassigned else [])
    for key in keys:
        ts = got.get(key)
        if not ts:
            continue
        t = concat(ts)
        pieces.append(t)
        ranges.append((key, r0, r0 + t.num_rows))
        r0 += t.num_rows
    left = concat(pieces)
    m = left.num_rows if left is not None else 0
    slot = None  # shuffle plan: the copies of a left row (one per probed bucket) share one query slot
    if m and p.plan == "shuffle":
        refs_all = left.column("_ref").to_numpy()
        uniq, first, slot = np.unique(refs_all, return_index=True, return_inverse=True)
        if len(uniq) < m:
            left_rows = left.take(pa.array(first))
        else:
            slot, left_rows = None, left
    else:
        left_rows = left
    mu = left_rows.num_rows if left_rows is not None else 0
    x = np.ascontiguousarray(vectors_of(left_rows.column("vector")), dtype=np.float32) if mu else \
        np.zeros((0, p.dim), dtype=np.float32)
    # the recall sample: extra queries at the end, scored on the partitions this task owns
    sample = None
    if task.sample_uri and (task.sample_owner or task.sample_unassigned):
        sample = load_arrays(task.scratch, task.sample_uri)
        if not len(sample["refs"]):
            sample = None
    q = x if sample is None else np.concatenate([x, sample["vectors"]])
    s_idx = np.arange(mu, len(q), dtype=np.int64)
    visits: list[Visit] = []
    if p.plan == "shuffle":
        for key, a, b in ranges:
            if key == "u":
                continue
            part = int(order[int(key)])
            frags = snap.by_partition.get(part)
            if frags:
                rows = np.arange(a, b, dtype=np.int64) if slot is None else np.sort(slot[a:b]).astype(np.int64)
                visits.append(Visit(part, frags, rows))
    elif m:
        probes = left.column("_probes").combine_chunks().values.to_numpy().reshape(m, -1).astype(np.int64)
        visits = plan_visits(SimpleNamespace(by_partition=snap.by_partition, unassigned=[]), probes,
                             np.arange(m, dtype=np.int64))
    if sample is not None and task.sample_owner:
        by_key = {v.key: v for v in visits}
        for pos in range(task.lo, task.hi):
            part = int(order[pos])
            v = by_key.get(part)
            if v is not None:
                v.queries = np.concatenate([v.queries, s_idx])
            elif snap.by_partition.get(part):
                visits.append(Visit(part, snap.by_partition[part], s_idx))
    if snap.unassigned:
        uq = np.zeros(0, dtype=np.int64)
        if task.unassigned or p.plan == "grouped":
            uq = np.arange(mu, dtype=np.int64)
        if sample is not None and task.sample_unassigned:
            uq = np.concatenate([uq, s_idx])
        if len(uq):
            visits += [Visit(-1, [f], uq) for f in snap.unassigned]
    unassigned_read = any(v.key < 0 for v in visits)
    mask_for = None
    if task.filter_uri:
        mask_for = _allowed_mask(load_arrays(task.scratch, task.filter_uri)["allowed"])
    state, cands, stats, qn = score_queries(st, q, visits, p, mask_for)
    stats["unassigned_reads"] = int(unassigned_read)
    res = ScoreResult(task.task_id, mu, stats=stats,
                      partitions=np.asarray(sorted({v.key for v in visits if v.key >= 0}), dtype=np.int64))
    if sample is not None:
        qi, rid, raddr, dist = results_of(state, cands, qn, p.metric, s_idx)
        srefs = sample["refs"][qi - mu]
        res.sample_exact = pa.table({"_ref": pa.array(srefs.astype(np.int64)), "distance": pa.array(dist),
                                     "_raddr": pa.array(raddr)})
    if mu:
        qi, rid, raddr, dist = results_of(state, cands, qn, p.metric, None if sample is None else np.arange(mu))
        refs = left_rows.column("_ref").to_numpy()
        lid = left_rows.column("_id").combine_chunks().take(pa.array(qi))
        pairs = pairs_table(refs[qi], lid, rid, dist, raddr) if len(qi) else None
        emit_pairs(res, pairs, p, task.final, task.scratch, task.task_id, "p2", final_rows=p.plan == "grouped",
                   sample_refs=None if task.sample_uri is None else load_arrays(task.scratch, task.sample_uri)["refs"],
                   right=task.right)
    res.io = _io_delta(before)
    res.seconds = time.time() - t0
    return res


def emit_pairs(res, pairs: pa.Table | None, p: JoinParams, final, scratch: ScratchSpec, task_id: int, phase: str,
               final_rows: bool, sample_refs, right: RightSpec) -> None:
    """Hand a task's pairs on: partial results by merge group (``final_rows`` False), final rows written as an
    output part, or final rows by pair bucket for the dedup phase."""
    store = scratch_store(scratch)
    if not final_rows:
        if pairs is None:
            return
        _write_buckets(res, store, scratch.join(phase, f"t{task_id:06d}-{uuid.uuid4().hex[:8]}.lvs"), pairs,
                       ref_bucket(pairs.column("_ref").to_numpy(), p.merge_groups))
        return
    rows, capped = finalize(pairs, p.k, p.radius, p.cap, p.self_join)
    res.capped += capped
    if rows is not None:
        refs = rows.column("_ref").to_numpy()
        uniq, cnt = np.unique(refs, return_counts=True)
        res.stats["refs_out"] = res.stats.get("refs_out", 0) + int(len(uniq))
        if p.k is not None:
            res.stats["refs_short"] = res.stats.get("refs_short", 0) + int((cnt < p.k).sum())
    if rows is not None and sample_refs is not None and len(sample_refs):
        hit = np.isin(rows.column("_ref").to_numpy(), sample_refs)
        if hit.any():
            res.sample_found = rows.filter(pa.array(hit)).select(["_ref", "_raddr", "distance", "rank"])
    if p.dedup:
        if rows is not None:
            _write_buckets(res, store, scratch.join(phase + "d", f"t{task_id:06d}-{uuid.uuid4().hex[:8]}.lvs"), rows,
                           pair_bucket(rows, p.dedup_buckets))
        return
    from .output import emit_final
    res.part = emit_final(rows, final, f"{phase}-{task_id:06d}", right)
    res.rows_out = res.part.rows


def _write_buckets(res, store, uri: str, tbl: pa.Table, bucket: np.ndarray) -> None:
    order = np.argsort(bucket, kind="stable")
    b = bucket[order]
    tbl = tbl.take(pa.array(order))
    cuts = np.r_[0, np.flatnonzero(np.diff(b)) + 1, len(b)]
    w = SectionWriter(store, uri)
    try:
        for a, c in zip(cuts[:-1], cuts[1:]):
            w.add(int(b[a]), tbl.slice(a, c - a))
        res.index = w.close()
    except BaseException:
        w.abort()
        raise


# --------------------------------------------------------------------------------------------------
# phase 3: merge partial results per left row (shuffle plan)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MergeTask:
    task_id: int
    scratch: ScratchSpec
    params: JoinParams
    group: int
    inputs: tuple  # ((uri, ((key, off, len, rows),)), ...)
    right: RightSpec
    final: object = None
    sample_uri: str | None = None


def run_merge_task(task: MergeTask) -> ScoreResult:
    t0 = time.time()
    p = task.params
    store = scratch_store(task.scratch)
    before = _io_before(scratch=store)
    got = _task_inputs(store, task.inputs).get(str(task.group), [])
    pairs = concat(got)
    res = ScoreResult(task.task_id, 0)
    if pairs is not None and p.k is not None:
        pairs, _ = keep_best(pairs, p.kk)  # the partial top-kk of every task, merged
        pairs = pairs.drop_columns(["rank"])
    sample_refs = load_arrays(task.scratch, task.sample_uri)["refs"] if task.sample_uri else None
    emit_pairs(res, pairs, p, task.final, task.scratch, task.task_id, "p3", True, sample_refs, task.right)
    res.io = _io_delta(before)
    res.seconds = time.time() - t0
    return res


# --------------------------------------------------------------------------------------------------
# phase 4: unordered pairs, once (self-join dedup)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DedupTask:
    task_id: int
    scratch: ScratchSpec
    params: JoinParams
    bucket: int
    inputs: tuple
    right: RightSpec
    final: object = None


def run_dedup_task(task: DedupTask) -> ScoreResult:
    t0 = time.time()
    store = scratch_store(task.scratch)
    before = _io_before(scratch=store)
    got = _task_inputs(store, task.inputs).get(str(task.bucket), [])
    rows = dedup_pairs(concat(got))
    res = ScoreResult(task.task_id, 0)
    from .output import emit_final
    res.part = emit_final(rows, task.final, f"p4-{task.task_id:06d}", task.right)
    res.rows_out = res.part.rows
    res.io = _io_delta(before)
    res.seconds = time.time() - t0
    return res
