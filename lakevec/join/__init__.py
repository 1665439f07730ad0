"""Offline similarity joins (DESIGN §4): kNN join, range join, self-join dedup, on local, Ray and Spark.

    r = lakevec.knn_join(left, right, k=10)                    # the k nearest right rows of every left row
    r = lakevec.knn_join(left, right, k=None, radius=0.2)      # every pair within distance 0.2 (capped per row)
    r = lakevec.knn_join(t, t, k=10, dedup=True)               # self-join: each unordered pair once (a < b)
    r = lakevec.knn_join(left, right, engine="spark", output="s3://b/pairs/")   # written exactly once
    r.table, r.report                                          # pairs (pyarrow) and what the join did
    g = lakevec.dedup(t, threshold=0.05)                       # duplicate groups (connected components)

``right`` is an indexed lakevec Table, pinned to one version for the whole join (writers may commit
meanwhile). ``left`` is a Table (any version), Parquet path(s)/glob/folder (local or s3://), a pyarrow
Table/RecordBatchReader/dataset, a pandas DataFrame, a dict of columns, a Spark DataFrame or a Ray Dataset,
with an id column (``id_column``) and a vector column (``vector_column``). Distances follow the right
table's metric (squared L2, 1 - cosine, -dot: smaller is nearer).

How it runs: partition at a time, in up to four phases of tasks that every engine runs with the same task
functions (``tasks.py``), with the lake's store (or a local folder for the local engine) as the shuffle
medium (``scratch.py``):

1. *assign* (one task per left shard): probe the right centroids (one GEMM) and write the rows to buckets;
2. *score* (one task per range of buckets of balanced cost): read each right partition once, through the
   NVMe cache, score all left rows that probe it with matrix products, keep a running top-k (faiss heaps)
   or every pair within the radius;
3. *merge* (shuffle plan only): merge the partial top-k of every left row;
4. *dedup* (self-join dedup only): keep each unordered pair once.

The plan -- shuffle left rows to the partitions they probe, or group them by nearest centroid so that each
task reads its left block once and the union of the partitions it probes -- is chosen by a cost model
(``plan.py``) and both estimates are reported. Memory is bounded: a task holds its left block (at most
``memory_budget`` bytes of vectors) and a window of partitions.

Results: ``left_id, right_id, distance, rank`` (rank from 0 per left row), then ``columns`` from either side
as ``left_<c>`` / ``right_<c>``; in-memory results are sorted by left row and rank (dedup: by left_id,
right_id). ``output=`` writes a Parquet folder exactly once (``output.py``); ``read_output`` reads it. The
report (``report.py``) has sizes, partitions and bytes read, how many times each right byte was read,
shuffle bytes, I/O and cost, seconds per phase and a recall estimate from an exact search of a sample.
"""
from __future__ import annotations

from .output import read_output
from .result import JoinResult


def knn_join(left, right, k=10, nprobe=None, radius=None, engine="local", output=None, **kw) -> JoinResult:
    """For each left row, its ``k`` nearest rows of the indexed table ``right`` (and/or all within ``radius``).

    Arguments (keyword): ``left_filter`` / ``right_filter`` (SQL predicates; right: applied before scoring),
    ``columns`` (names taken from either side), ``left_columns``, ``right_columns``, ``dedup`` (self-join:
    each unordered pair once, ``left_id < right_id``), ``id_column`` / ``vector_column`` (left input),
    ``max_pairs_per_row`` (range join cap, default 1000; rows that hit it are counted in the report),
    ``recall_sample`` (rows searched exactly for the recall estimate, default 200; 0 disables),
    ``idempotency_key`` (of ``output``), ``plan`` ("auto" | "shuffle" | "grouped"), ``memory_budget`` (bytes of
    left vectors per task), ``scratch`` (where shuffle files go), ``storage_options``, ``seed``, ``progress``
    (a callable receiving one line per phase).
    """
    from .executor import knn_join as _run
    return _run(left, right, k=k, nprobe=nprobe, radius=radius, engine=engine, output=output, **kw)


def dedup(table, threshold, k=10, output=None, **kw):
    """Duplicate groups of ``table``: connected components of the pairs within ``threshold`` (see groups.py)."""
    from .groups import dedup as _dedup
    return _dedup(table, threshold, k=k, output=output, **kw)


__all__ = ["knn_join", "dedup", "JoinResult", "read_output"]
