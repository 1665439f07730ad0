"""Partition-grouped batch search: plan probes, read each partition once, score all its queries.

Three separate units, after faiss's ``contrib/big_batch_search``:
  * the plan (``plan_visits``): which partitions each query probes, inverted into per-partition
    query lists;
  * the kernel (``kernels.distances`` / ``TopK``): one matrix product per (partition, query block)
    and a running top-k merge;
  * the schedule (``PrefetchingLoop``): reads the next partitions on background threads while the
    current one is scored, so I/O overlaps BLAS and only a few partitions are in memory at once.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..config import SEARCH_PREFETCH, SEARCH_QUERY_BLOCK
from ..errors import InvalidArgumentError, LakevecError
from ..snapshot import FragmentInfo, Snapshot
from .kernels import TopK, distances, sq_norms, topk_rows
from .reader import Block, FragmentReader


@dataclass
class Visit:
    """One unit of work: a set of fragments (a partition or the unassigned rows) and its queries."""

    key: int  # partition id, or -1 for unassigned fragments
    fragments: list[FragmentInfo]
    queries: np.ndarray  # query indices (int64)


def plan_visits(snap: Snapshot, probes: np.ndarray | None, query_ids: np.ndarray) -> list[Visit]:
    """Invert per-query probe lists (len(query_ids), nprobe) into per-partition visits."""
    visits: list[Visit] = []
    if probes is not None and probes.size:
        flat = probes.ravel()
        qs = np.repeat(query_ids, probes.shape[1])
        order = np.argsort(flat, kind="stable")
        flat, qs = flat[order], qs[order]
        cuts = np.flatnonzero(np.diff(flat)) + 1
        for part, qgroup in zip(np.split(flat, cuts), np.split(qs, cuts)):
            p = int(part[0])
            frags = snap.by_partition.get(p)
            if frags:
                visits.append(Visit(p, frags, qgroup))
    if snap.unassigned and len(query_ids):
        visits.append(Visit(-1, snap.unassigned, np.asarray(query_ids)))
    return visits


class PrefetchingLoop:
    """Yields (visit, block) in order, reading up to ``depth`` visits ahead on worker threads."""

    def __init__(self, reader: FragmentReader, depth: int = SEARCH_PREFETCH, mask_for=None):
        self.reader = reader
        self.depth = max(1, depth)
        self.mask_for = mask_for

    def run(self, visits: list[Visit]):
        if not visits:
            return
        with ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix="lakevec-read") as pool:
            pending = []
            it = iter(visits)
            for v in it:
                pending.append((v, pool.submit(self.reader.read_block, v.fragments, v.key, self.mask_for)))
                if len(pending) >= self.depth:
                    break
            while pending:
                v, fut = pending.pop(0)
                block = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self.reader.read_block, nxt.fragments, nxt.key,
                                                     self.mask_for)))
                yield v, block


class Candidates:
    """Keeps the ids and row addresses of scored blocks; TopK refs index into them."""

    def __init__(self):
        self.ids: list = []
        self.addr: list[np.ndarray] = []
        self.base = 0
        self._bases: list[int] = []

    def add(self, block: Block) -> int:
        base = self.base
        self.ids.append(block.ids)
        self.addr.append(block.rowaddr)
        self._bases.append(base)
        self.base += len(block)
        return base

    def resolve(self, refs: np.ndarray):
        """Return (ids pyarrow array, row addresses) for flat refs (all >= 0)."""
        if not self.ids:
            return pa.array([], type=pa.int64()), np.empty(0, dtype=np.uint64)
        bases = np.asarray(self._bases)
        which = np.searchsorted(bases, refs, side="right") - 1
        ids_out = []
        addr_out = np.empty(len(refs), dtype=np.uint64)
        order = np.argsort(which, kind="stable")
        chunks = []
        for b in np.unique(which):
            sel = order[which[order] == b]
            local = refs[sel] - bases[b]
            chunks.append((sel, self.ids[b].take(pa.array(local))))
            addr_out[sel] = self.addr[b][local]
        # put the id chunks back into ref order
        positions = np.concatenate([s for s, _ in chunks])
        ids_cat = pa.concat_arrays([c for _, c in chunks]) if chunks else pa.array([])
        inv = np.empty_like(positions)
        inv[positions] = np.arange(len(positions))
        ids_out = ids_cat.take(pa.array(inv))
        return ids_out, addr_out


def score_block(block: Block, q: np.ndarray, q_norms: np.ndarray, qidx: np.ndarray, metric: str,
                topk: TopK, base: int, query_block: int = SEARCH_QUERY_BLOCK) -> None:
    """Score the queries ``qidx`` against ``block`` and merge into ``topk`` (the kernel)."""
    xn = sq_norms(block.vectors) if metric == "l2" else None
    k = topk.k
    for s in range(0, len(qidx), query_block):
        qi = qidx[s:s + query_block]
        d = distances(q[qi], block.vectors, metric, x_norms=xn, q_norms=q_norms[qi] if q_norms is not None else None)
        loc, ld = topk_rows(d, min(k, d.shape[1]))
        topk.merge(qi, ld, loc.astype(np.int64) + base)


def prepare_queries(queries, dim: int, metric: str) -> tuple[np.ndarray, bool]:
    """Return queries as a C-contiguous float32 (m, dim) matrix (normalised for cosine), and if 1-D."""
    try:
        q = np.asarray(queries, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"queries must be numeric arrays of dimension {dim}: {e}") from e
    single = q.ndim == 1
    if single:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise InvalidArgumentError(f"queries have shape {tuple(np.shape(queries))}; expected ({dim},) or (m, {dim})")
    if not np.isfinite(q).all():
        bad = np.flatnonzero(~np.isfinite(q).all(axis=1))[:5].tolist()
        raise InvalidArgumentError(f"queries contain NaN or Inf (query rows {bad})")
    if metric == "cosine":
        n = np.linalg.norm(q, axis=1, keepdims=True)
        if (n == 0).any():
            raise InvalidArgumentError(f"zero query vector(s) at rows {np.flatnonzero(n[:, 0] == 0)[:5].tolist()} "
                                       "cannot be used with the cosine metric")
        q = q / n
    return np.ascontiguousarray(q, dtype=np.float32), single


def batch_search(snap: Snapshot, reader: FragmentReader, q: np.ndarray, k: int, nprobe: int, metric: str,
                 mask_for=None, prefetch: int = SEARCH_PREFETCH, want_full: bool = False):
    """Run the grouped search; return (TopK, Candidates, stats dict)."""
    m = len(q)
    topk = TopK(m, k)
    cands = Candidates()
    q_norms = sq_norms(q) if metric == "l2" else None
    all_q = np.arange(m, dtype=np.int64)
    stats = {"partitions_read": 0, "rows_scored": 0, "rounds": 0}
    model = snap.model
    if model is None:
        visits = plan_visits(snap, None, all_q)
        _run(visits, reader, q, q_norms, metric, topk, cands, mask_for, prefetch, stats)
        stats["rounds"] = 1
        return topk, cands, stats
    ranked = None
    lo, hi = 0, min(nprobe, model.nlist)
    pending = all_q
    first = True
    while len(pending):
        if first:
            probes = model.probe(q, hi)
            unassigned_pass = True
        else:
            if ranked is None:
                ranked = model.rank_partitions(q)
            probes = ranked[pending, lo:hi]
            unassigned_pass = False
        sub = snap if unassigned_pass else _without_unassigned(snap)
        visits = plan_visits(sub, probes, pending)
        _run(visits, reader, q, q_norms, metric, topk, cands, mask_for, prefetch, stats)
        stats["rounds"] += 1
        first = False
        # Pre-filtered searches may find fewer than k rows in nprobe partitions: probe further.
        if mask_for is None or hi >= model.nlist:
            break
        pending = pending[topk.found()[pending] < k]
        lo, hi = hi, min(model.nlist, hi * 2)
    return topk, cands, stats


def _without_unassigned(snap: Snapshot) -> Snapshot:
    s = Snapshot(snap.ds, snap.version, snap.fragments, snap.index, snap.model, snap.by_partition, [])
    return s


def _run(visits, reader, q, q_norms, metric, topk, cands, mask_for, prefetch, stats):
    loop = PrefetchingLoop(reader, prefetch, mask_for)
    for v, block in loop.run(visits):
        stats["partitions_read"] += 1 if v.key >= 0 else len(v.fragments)
        if block is None or len(block) == 0:
            continue
        stats["rows_scored"] += len(block) * len(v.queries)
        base = cands.add(block)
        score_block(block, q, q_norms, v.queries, metric, topk, base)
