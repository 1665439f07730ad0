"""Join kernels and merges: running top-k and range accumulators, merging partial results per left row,
ranking, self-pair removal and unordered-pair de-duplication.

Scores are the *partial scores* of ``search.kernels.partial_scores`` (the distance minus a per-query
constant), so ranking needs one GEMM and one broadcast add; the constant is added to the survivors only.

``HeapTopK`` keeps, per query, the k best (score, candidate ref) as a max-heap and merges a whole
(queries x rows) score block in C++ with faiss's ``HeapArray.addn`` (the inner loop of faiss's own
``big_batch_search``): about 10x cheaper than ``argpartition`` on the small blocks of a join, where the
selection, not the GEMM, dominates. Without faiss it falls back to numpy's partial sort.

Determinism: partial results are merged by sorting on (left ref, distance, right row address), so equal
distances are broken by the right row's address, the same way under every engine and task layout.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..arrays import unique
from ..search.kernels import topk_rows
from .plan import mix64

try:  # pragma: no cover - faiss is a core dependency; the numpy path covers its absence
    import faiss as _faiss
except Exception:  # pragma: no cover
    _faiss = None


class Registry:
    """Ids and row addresses of the right blocks a task scored; candidate refs are positions in their
    concatenation (``add`` returns a block's first ref). Resolving is one ``take``, whatever the number of
    blocks."""

    def __init__(self):
        import threading
        self.ids: list = []
        self.addr: list = []
        self.n = 0
        self._lock = threading.Lock()
        self._cat = None

    def add(self, block) -> int:
        with self._lock:
            base = self.n
            ids = block.ids.combine_chunks() if isinstance(block.ids, pa.ChunkedArray) else block.ids
            self.ids.append(ids)
            self.addr.append(np.asarray(block.rowaddr, dtype=np.uint64))
            self.n += len(block)
            self._cat = None
        return base

    def resolve(self, refs: np.ndarray):
        """(right ids as a pyarrow array, row addresses) of candidate refs."""
        if self._cat is None:
            if not self.ids:
                return pa.array([], pa.int64()), np.zeros(0, dtype=np.uint64)
            self._cat = (pa.concat_arrays(self.ids) if len(self.ids) > 1 else self.ids[0],
                         np.concatenate(self.addr) if len(self.addr) > 1 else self.addr[0])
        ids, addr = self._cat
        return ids.take(pa.array(refs)), addr[refs]


class HeapTopK:
    """Per-query running top-k of partial scores; refs are caller-defined candidate numbers (-1 = empty)."""

    def __init__(self, m: int, k: int):
        self.k = k
        self.m = m
        self.dist = np.full((m, k), np.inf, dtype=np.float32)
        self.ref = np.full((m, k), -1, dtype=np.int64)
        self._heaped = _faiss is not None  # rows are max-heaps (faiss) rather than sorted lists

    def _heap(self, d: np.ndarray, r: np.ndarray, n: int):
        h = _faiss.float_maxheap_array_t()
        h.k = self.k
        h.nh = n
        h.val = _faiss.swig_ptr(d)
        h.ids = _faiss.swig_ptr(r)
        return h

    def add(self, qidx: np.ndarray, scores: np.ndarray, base: int) -> None:
        """Merge ``scores`` (len(qidx), n), candidate refs ``base + column``, into the queries ``qidx``."""
        b, n = scores.shape
        if b == 0 or n == 0:
            return
        if _faiss is None:
            loc, ld = topk_rows(scores, min(self.k, n))
            cd = np.concatenate([self.dist[qidx], ld], axis=1)
            cr = np.concatenate([self.ref[qidx], loc.astype(np.int64) + base], axis=1)
            sel, sd = topk_rows(cd, self.k)
            self.dist[qidx] = sd
            self.ref[qidx] = np.take_along_axis(cr, sel, axis=1)
            return
        s = np.ascontiguousarray(scores, dtype=np.float32)
        q0 = int(qidx[0])
        if int(qidx[-1]) - q0 + 1 == b and (b == 1 or np.all(np.diff(qidx) == 1)):
            d, r = self.dist[q0:q0 + b], self.ref[q0:q0 + b]  # contiguous rows: heaps in place
            self._heap(d, r, b).addn(n, _faiss.swig_ptr(s), int(base), 0, b)
            return
        d = np.ascontiguousarray(self.dist[qidx])
        r = np.ascontiguousarray(self.ref[qidx])
        self._heap(d, r, b).addn(n, _faiss.swig_ptr(s), int(base), 0, b)
        self.dist[qidx] = d
        self.ref[qidx] = r

    def merge_from(self, other: "HeapTopK") -> None:
        """Merge another HeapTopK over the same queries (disjoint candidates) into this one."""
        if _faiss is None:
            cd = np.concatenate([self.dist, other.dist], axis=1)
            cr = np.concatenate([self.ref, other.ref], axis=1)
            sel, sd = topk_rows(cd, self.k)
            self.dist, self.ref = sd, np.take_along_axis(cr, sel, axis=1)
            return
        d = np.ascontiguousarray(other.dist)
        r = np.ascontiguousarray(other.ref)
        self._heap(self.dist, self.ref, self.m).addn_with_ids(self.k, _faiss.swig_ptr(d), _faiss.swig_ptr(r),
                                                             self.k, 0, self.m)

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, refs) sorted ascending per query (unfilled slots: inf, -1)."""
        order = np.argsort(self.dist, axis=1, kind="stable")
        return np.take_along_axis(self.dist, order, axis=1), np.take_along_axis(self.ref, order, axis=1)


class RangeAcc:
    """All (query, candidate) pairs within the radius, at most ``cap`` per query (the nearest ones);
    ``capped`` marks queries that had more.

    Candidates are selected on partial scores with a small slack, then their distance is recomputed
    directly (``|q - x|^2``; ``|q - x|^2 / 2`` for unit vectors under cosine), so identical vectors are at
    distance exactly 0 and the radius test does not suffer from the cancellation of ``|q|^2 - 2q.x + |x|^2``.
    Stored distances are final.
    """

    COMPACT_PAIRS = 4_000_000

    def __init__(self, m: int, cap: int, radius: float, metric: str, q_norms: np.ndarray | None):
        self.m, self.cap = m, cap
        self.radius = np.float32(radius)
        self.metric = metric
        self.qn = q_norms
        self.q: list = []
        self.r: list = []
        self.d: list = []
        self.n = 0
        self.capped = np.zeros(m, dtype=bool)

    def add(self, qidx: np.ndarray, scores: np.ndarray, base: int, q: np.ndarray, x: np.ndarray,
            x_norms: np.ndarray | None) -> None:
        r = float(self.radius)
        if self.metric == "l2":
            qn = self.qn[qidx]
            th = (r - qn + 1e-4 * (qn + float(x_norms.max()) + 1.0)).astype(np.float32)
        elif self.metric == "cosine":
            th = np.full(len(qidx), r - 1.0 + 1e-4, dtype=np.float32)
        else:
            th = np.full(len(qidx), r, dtype=np.float32)
        rr, cc = np.nonzero(scores <= th[:, None])
        if not len(rr):
            return
        if self.metric == "dot":
            d = scores[rr, cc].astype(np.float32)
        else:
            diff = q[rr] - x[cc]
            d = np.einsum("ij,ij->i", diff, diff, dtype=np.float32)
            if self.metric == "cosine":
                d *= np.float32(0.5)
            keep = d <= self.radius
            rr, cc, d = rr[keep], cc[keep], d[keep]
        self.q.append(qidx[rr].astype(np.int64))
        self.r.append(cc.astype(np.int64) + base)
        self.d.append(d)
        self.n += len(rr)
        if self.n > max(self.COMPACT_PAIRS, 2 * self.cap * 64):
            self.compact()

    def merge_from(self, other: "RangeAcc") -> None:
        self.q += other.q
        self.r += other.r
        self.d += other.d
        self.n += other.n
        self.capped |= other.capped

    def compact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep the ``cap`` nearest pairs per query; return (query, ref, score) sorted by (query, score)."""
        if not self.q:
            e = np.zeros(0, dtype=np.int64)
            return e, e.copy(), np.zeros(0, dtype=np.float32)
        q, r, d = np.concatenate(self.q), np.concatenate(self.r), np.concatenate(self.d)
        order = np.lexsort((r, d, q))
        q, r, d = q[order], r[order], d[order]
        rank = _ranks(q)
        over = rank >= self.cap
        if over.any():
            self.capped[unique(q[over])] = True
            keep = ~over
            q, r, d = q[keep], r[keep], d[keep]
        self.q, self.r, self.d, self.n = [q], [r], [d], len(q)
        return q, r, d


def _ranks(sorted_keys: np.ndarray) -> np.ndarray:
    """0-based position of every element within its run of equal keys (keys sorted)."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


PAIR_SCHEMA_FIELDS = ("_ref", "left_id", "right_id", "distance", "_raddr")


def pairs_table(refs, left_ids, right_ids, dist, raddr) -> pa.Table:
    """The internal pair layout shared by all phases."""
    return pa.table({"_ref": pa.array(np.asarray(refs, dtype=np.int64)),
                     "left_id": left_ids, "right_id": right_ids,
                     "distance": pa.array(np.asarray(dist, dtype=np.float32)),
                     "_raddr": pa.array(np.asarray(raddr, dtype=np.uint64))})


def concat(tables: list) -> pa.Table | None:
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def _sort_order(tbl: pa.Table) -> np.ndarray:
    ref = tbl.column("_ref").to_numpy()
    dist = tbl.column("distance").to_numpy()
    raddr = tbl.column("_raddr").to_numpy()
    return np.lexsort((raddr, dist, ref))


def keep_best(tbl: pa.Table, per_row: int) -> tuple[pa.Table, np.ndarray]:
    """Sort by (ref, distance, raddr); keep the first ``per_row`` rows per ref; return (table with ``rank``,
    refs that had more than ``per_row``)."""
    order = _sort_order(tbl)
    tbl = tbl.take(pa.array(order))
    ref = tbl.column("_ref").to_numpy()
    rank = _ranks(ref)
    over = rank >= per_row
    overflow = unique(ref[over]) if over.any() else np.zeros(0, dtype=np.int64)
    if over.any():
        keep = ~over
        tbl = tbl.filter(pa.array(keep))
        rank = rank[keep]
    return tbl.append_column("rank", pa.array(rank.astype(np.int32))), overflow


def finalize(tbl: pa.Table | None, k: int | None, radius: float | None, cap: int, self_join: bool):
    """Turn every candidate of some left rows into their final pairs.

    Drops self pairs (a self-join's left ref is the row address, so ``_ref == _raddr``), keeps the k
    nearest (kNN) or the ``cap`` nearest within ``radius`` (range), ranks them from 0. Returns
    (table with rank, number of left rows that hit the cap).
    """
    if tbl is None or not tbl.num_rows:
        return None, 0
    if self_join:
        tbl = tbl.filter(pc.not_equal(tbl.column("_ref").cast(pa.uint64()), tbl.column("_raddr")))
    if radius is not None:
        tbl = tbl.filter(pc.less_equal(tbl.column("distance"), pa.scalar(radius, pa.float32())))
    if not tbl.num_rows:
        return None, 0
    per_row = k if k is not None else cap
    out, overflow = keep_best(tbl, per_row)
    return out, (int(len(overflow)) if k is None else 0)


def unordered_key(tbl: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) row addresses of each pair of a self-join (refs are row addresses there)."""
    a = tbl.column("_ref").to_numpy().astype(np.uint64)
    b = tbl.column("_raddr").to_numpy()
    return np.minimum(a, b), np.maximum(a, b)


def pair_bucket(tbl: pa.Table, buckets: int) -> np.ndarray:
    lo, hi = unordered_key(tbl)
    return (mix64(lo ^ mix64(hi)) % np.uint64(max(1, buckets))).astype(np.int64)


def ref_bucket(refs: np.ndarray, buckets: int) -> np.ndarray:
    return (mix64(refs) % np.uint64(max(1, buckets))).astype(np.int64)


def dedup_pairs(tbl: pa.Table | None) -> pa.Table | None:
    """Keep every unordered pair once (self-join): the nearest report of it, with the lower rank of the two
    directions, oriented so that ``left_id < right_id``."""
    if tbl is None or not tbl.num_rows:
        return None
    lo, hi = unordered_key(tbl)
    dist = tbl.column("distance").to_numpy()
    rank = tbl.column("rank").to_numpy()
    order = np.lexsort((rank, dist, hi, lo))
    lo_s, hi_s = lo[order], hi[order]
    first = np.r_[True, (lo_s[1:] != lo_s[:-1]) | (hi_s[1:] != hi_s[:-1])]
    starts = np.flatnonzero(first)
    min_rank = np.minimum.reduceat(rank[order], starts) if len(starts) else rank[:0]
    t = tbl.take(pa.array(order[starts]))
    t = t.set_column(t.schema.get_field_index("rank"), "rank", pa.array(min_rank.astype(np.int32)))
    swap = pc.greater(t.column("left_id"), t.column("right_id"))
    if pc.any(swap).as_py():
        cols = {}
        for a, b in (("left_id", "right_id"), ("_ref", "_raddr")):
            ca, cb = t.column(a), t.column(b)
            if a == "_ref":
                ca, cb = ca.cast(pa.uint64()), cb
            cols[a] = pc.if_else(swap, cb, ca)
            cols[b] = pc.if_else(swap, ca, cb)
        cols["_ref"] = cols["_ref"].cast(pa.int64())
        for name, col in cols.items():
            t = t.set_column(t.schema.get_field_index(name), name, col)
    return t
