"""Table.search: validate arguments, check the filter, run the grouped batch search, shape the result."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from ..config import ID_COLUMN, PARTITION_COLUMN, SEARCH_IO_THREADS_REMOTE, SEARCH_PREFETCH
from ..errors import InvalidArgumentError
from .executor import batch_search, prepare_queries
from .filters import FragmentFilter
from .reader import FragmentReader, take_columns


def _check_k(k, name="k"):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def search(table, queries, k: int = 10, nprobe: int | None = None, filter: str | None = None,
           columns=None, with_stats: bool = False):
    """Return the k nearest rows of every query (see Table.search)."""
    t0 = time.time()
    k = _check_k(k)
    if nprobe is not None:
        nprobe = _check_k(nprobe, "nprobe")
    snap = table.snapshot()
    k = min(k, max(1, snap.num_rows))  # no query can have more neighbours than the table has rows
    meta = table.meta
    q, single = prepare_queries(queries, meta.dim, meta.metric)
    cols = _check_columns(columns, snap.ds.schema)
    before = table.store.counters.snapshot()
    row_filter = None
    if filter is not None:  # checked now; evaluated on the fragments each round reads
        row_filter = FragmentFilter(snap.ds, filter, table.store.counters, f"table {table.name!r}")
    probe = nprobe or (snap.index.default_nprobe if snap.index else 0)
    reader = FragmentReader(snap.ds, table.data_uri, table.store, table.lake.cache, table.name,
                            memory=table.lake.memory_cache, index_id=snap.index.index_id if snap.index else "")
    io_threads = SEARCH_PREFETCH if table.store.loc.is_local else SEARCH_IO_THREADS_REMOTE
    topk, cands, stats = batch_search(snap, reader, q, k, probe, meta.metric, row_filter, io_threads=io_threads)
    found = topk.ref >= 0
    qidx, rank = np.nonzero(found)
    refs = topk.ref[qidx, rank]
    dist = topk.dist[qidx, rank]
    ids, addr = cands.resolve(refs)
    out = {
        "query_index": pa.array(qidx.astype(np.int32)),
        "id": ids,
        "distance": pa.array(dist.astype(np.float32)),
        "rank": pa.array(rank.astype(np.int32)),
    }
    result = pa.table(out)
    if cols:
        extra = take_columns(snap.ds, addr, cols)
        for c in cols:
            result = result.append_column(c, extra.column(c))
    io = table.store.counters.snapshot() - before
    stats.update({"seconds": time.time() - t0, "nprobe": probe if snap.index else None, "queries": len(q),
                  "version": snap.version, "io": io.to_dict(table.lake.cache.prices)})
    table._last_search_stats = stats
    return (result, stats) if with_stats else result


def _check_columns(columns, schema) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        columns = [columns]
    cols = list(columns)
    names = [n for n in schema.names if n != PARTITION_COLUMN]
    for c in cols:
        if not isinstance(c, str) or c not in names:
            raise InvalidArgumentError(f"unknown column {c!r} in columns=; table columns are {names}")
        if c in ("query_index", "distance", "rank", ID_COLUMN):
            raise InvalidArgumentError(f"column {c!r} is always returned; do not request it in columns=")
    return cols
