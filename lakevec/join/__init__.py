"""Offline similarity joins (DESIGN §4): for each left row, its k nearest rows of an indexed right table.

This first version runs on the local engine and reuses the partition-grouped batch search: left rows are
taken in blocks, each block is assigned to its nprobe right partitions, every probed partition is read once
per block and scored with one matrix product, and the partial top-k are merged per left row. Results are
``left_id, right_id, distance, rank`` (Parquet when ``output`` is given). A self-join (left is right)
drops each row's match with itself and, with ``dedup=True``, keeps every unordered pair once
(left_id < right_id). Ray/Spark scheduling and range joins are future work.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import ID_COLUMN, VECTOR_COLUMN
from ..errors import InvalidArgumentError
from ..search.reader import vectors_of

JOIN_BLOCK_ROWS = 65536


def _left_blocks(left, id_column: str, vector_column: str):
    """Yield (ids, vectors) blocks of the left input: a Table, Parquet path(s), a pyarrow table or dict."""
    if hasattr(left, "data_uri") and hasattr(left, "lake"):
        ds = left._dataset()
        for b in ds.to_batches(columns=[ID_COLUMN, VECTOR_COLUMN], batch_size=JOIN_BLOCK_ROWS):
            yield b.column(ID_COLUMN), vectors_of(b.column(VECTOR_COLUMN))
        return
    from ..ingest.convert import is_path_input, iter_parquet, memory_batches, rename_columns, resolve_files
    if is_path_input(left):
        for src in resolve_files(left, None):
            for b in iter_parquet(src, None, JOIN_BLOCK_ROWS):
                b = rename_columns(b, id_column, vector_column, src.uri)
                yield b.column(ID_COLUMN), _as_matrix(b.column(VECTOR_COLUMN))
        return
    for b in memory_batches(left, id_column, vector_column, JOIN_BLOCK_ROWS):
        yield b.column(ID_COLUMN), _as_matrix(b.column(VECTOR_COLUMN))


def _as_matrix(col) -> np.ndarray:
    if pa.types.is_fixed_size_list(col.type):
        return np.asarray(vectors_of(col), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in col.to_pylist()])


def knn_join(left, right, k: int = 10, nprobe: int | None = None, engine: str = "local", output=None,
             id_column: str = "id", vector_column: str = "vector", dedup: bool = False) -> pa.Table | dict:
    """Return ``left_id, right_id, distance, rank`` of the k nearest right rows of every left row."""
    if engine != "local":
        raise InvalidArgumentError(f"knn_join runs on the local engine for now (got engine={engine!r})")
    if not (hasattr(right, "search") and hasattr(right, "snapshot")):
        raise InvalidArgumentError("right must be a lakevec Table (indexed for a fast join)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    self_join = left is right or (hasattr(left, "data_uri") and getattr(left, "data_uri", None) == right.data_uri)
    kk = k + 1 if self_join else k
    parts = []
    for ids, vecs in _left_blocks(left, id_column, vector_column):
        res = right.search(vecs, k=kk, nprobe=nprobe)
        qi = res.column("query_index").to_numpy()
        lid = ids.take(pa.array(qi))
        tbl = pa.table({"left_id": lid, "right_id": res.column("id"), "distance": res.column("distance")})
        if self_join:
            keep = pc.not_equal(tbl.column("left_id"), tbl.column("right_id"))
            tbl = tbl.filter(keep)
        parts.append(_rank(tbl, k))
    out = pa.concat_tables(parts) if parts else pa.table({"left_id": [], "right_id": [], "distance": [],
                                                          "rank": []})
    if self_join and dedup and out.num_rows:
        out = out.filter(pc.less(out.column("left_id"), out.column("right_id")))
    if output is not None:
        pq.write_table(out, str(output))
        return {"rows": out.num_rows, "output": str(output)}
    return out


def _rank(tbl: pa.Table, k: int) -> pa.Table:
    """Number the rows of each left_id by distance (0-based) and keep the first k."""
    if tbl.num_rows == 0:
        return tbl.append_column("rank", pa.array([], pa.int32()))
    lid = tbl.column("left_id").to_numpy(zero_copy_only=False)
    dist = tbl.column("distance").to_numpy()
    _, inv = np.unique(lid, return_inverse=True)
    order = np.lexsort((dist, inv))
    inv_s = inv[order]
    starts = np.r_[0, np.flatnonzero(np.diff(inv_s)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = rank < k
    t = tbl.take(pa.array(order[keep]))
    return t.append_column("rank", pa.array(rank[keep].astype(np.int32)))
