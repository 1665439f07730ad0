"""Partition-grouped batch search: plan probes, read each partition once, score all its queries.

Three separate units, after faiss's ``contrib/big_batch_search``:
  * the plan (``plan_visits``): which partitions each query probes, inverted into per-partition
    query lists;
  * the kernel (``kernels.distances`` / ``TopK``): one matrix product per (partition, query block)
    and a running top-k merge;
  * the schedule (``schedule.run_pipeline``): I/O threads read the next partitions while worker
    threads score others (BLAS limited to one thread each), so I/O overlaps compute and only a few
    partitions are in memory at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..config import SEARCH_PREFETCH, SEARCH_QUERY_BLOCK, SEARCH_THREADS
from ..errors import InvalidArgumentError
from ..snapshot import FragmentInfo, Snapshot
from .kernels import TopK, finish, partial_scores, scaled_queries, sq_norms, topk_rows
from .reader import Block, FragmentReader
from .schedule import run_pipeline, single_threaded_blas


INLINE_ROWS = 200_000  # below this many rows to read from local disk, search in the calling thread


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


class Candidates:
    """Keeps the ids and row addresses of scored blocks; TopK refs index into them."""

    def __init__(self):
        self.ids: list = []
        self.addr: list[np.ndarray] = []
        self.base = 0
        self._bases: list[int] = []
        self._lock = threading.Lock()

    def add(self, block: Block) -> int:
        """Register a block's ids and row addresses; return the ref of its first row."""
        with self._lock:
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


def score_block(block: Block, qs: np.ndarray, qidx: np.ndarray, metric: str, topk: TopK, base: int,
                query_block: int = SEARCH_QUERY_BLOCK) -> None:
    """Score scaled queries ``qs[qidx]`` against ``block``; merge partial scores into ``topk`` (the kernel)."""
    xn = sq_norms(block.vectors) if metric == "l2" else None
    k = topk.k
    for s in range(0, len(qidx), query_block):
        qi = qidx[s:s + query_block]
        d = partial_scores(qs[qi], block.vectors, metric, x_norms=xn)
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
                 row_filter=None, workers: int = SEARCH_THREADS, io_threads: int = SEARCH_PREFETCH):
    """Run the grouped search; return (TopK of final distances, Candidates, stats dict).

    ``row_filter`` (a ``filters.FragmentFilter``, or None): every round evaluates it on the fragments that
    round reads, and only their rows that match are scored (pre-filter); rounds probe further partitions
    for the queries with fewer than k matches.
    """
    m = len(q)
    qs = scaled_queries(q, metric)
    cands = Candidates()
    stats = {"partitions_read": 0, "fragments_read": 0, "rows_read": 0, "distances": 0, "rounds": 0}
    states: list[TopK] = []
    lock = threading.Lock()

    mask_for = None  # the filter mask of the current round

    def read(v: Visit):
        return reader.read_block(v.fragments, v.key, mask_for)

    def score(v: Visit, block, topk: TopK):
        with lock:
            stats["partitions_read"] += 1 if v.key >= 0 else 0
            stats["fragments_read"] += len(v.fragments)
            stats["rows_read"] += len(block) if block is not None else 0
            stats["distances"] += len(block) * len(v.queries) if block is not None else 0
        if block is None or len(block) == 0:
            return
        score_block(block, qs, v.queries, metric, topk, cands.add(block))

    def run(visits):
        nonlocal mask_for
        if row_filter is not None:
            mask_for = row_filter.mask_for(f.fragment_id for v in visits for f in v.fragments)
        w, io = workers, io_threads
        if reader.local and sum(f.num_rows for v in visits for f in v.fragments) < INLINE_ROWS:
            w, io = 1, 1  # small job on local disk: thread hand-offs would cost more than they save
        with single_threaded_blas():
            states.extend(run_pipeline(visits, read, score, lambda: TopK(m, k), w, io))
        stats["rounds"] += 1

    all_q = np.arange(m, dtype=np.int64)
    model = snap.model
    if model is None:
        run(_split_unassigned(plan_visits(snap, None, all_q)))
    else:
        run(_split_unassigned(plan_visits(snap, model.probe(q, min(nprobe, model.nlist)), all_q)))
        # A pre-filter may leave fewer than k rows in the nprobe partitions: probe further for those queries.
        lo, hi = min(nprobe, model.nlist), min(model.nlist, 2 * max(1, nprobe))
        ranked = None
        while row_filter is not None and lo < model.nlist:
            merged = _merge(states, m, k)
            pending = all_q[merged.found() < k]
            if not len(pending):
                break
            if ranked is None:
                ranked = model.rank_partitions(q)
            run(plan_visits(_without_unassigned(snap), ranked[pending, lo:hi], pending))
            lo, hi = hi, min(model.nlist, hi * 2)
    topk = _merge(states, m, k)
    q_norms = sq_norms(q) if metric == "l2" else None
    filled = topk.ref >= 0
    topk.dist = np.where(filled, finish(topk.dist, metric, q_norms), np.inf).astype(np.float32)
    return topk, cands, stats


def _merge(states: list[TopK], m: int, k: int) -> TopK:
    out = TopK(m, k)
    for st in states:
        out.merge_from(st)
    return out


def _split_unassigned(visits: list[Visit]) -> list[Visit]:
    """Give every unassigned fragment its own visit, so big unindexed fragments are read one at a time."""
    out = []
    for v in visits:
        if v.key < 0 and len(v.fragments) > 1:
            out += [Visit(-1, [f], v.queries) for f in v.fragments]
        else:
            out.append(v)
    return out


def _without_unassigned(snap: Snapshot) -> Snapshot:
    return Snapshot(snap.ds, snap.version, snap.fragments, snap.index, snap.model, snap.by_partition, [])
