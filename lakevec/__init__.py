"""lakevec: a vector data lake on object storage (Lance tables, IVF partitions, NVMe cache, Spark/Ray jobs).

    import lakevec
    lake = lakevec.connect("s3://bucket/lake", storage_options={...})
    t = lake.create_table("docs", dim=384, metric="cosine")
    t.add({"id": ids, "vector": vectors})
    t.build_index()
    hits = t.search(queries, k=10)
"""
from .errors import (CacheError, CommitConflictError, CredentialsError, EngineError, IndexError_, InvalidArgumentError,
                     InvalidNameError, LakevecError, NotALakeError, SchemaError, StorageError, TableExistsError, TableNotFoundError,
                     ValidationError)
from .lake import Lake, connect

__version__ = "0.1.0"


def knn_join(left, right, k: int | None = 10, nprobe: int | None = None, engine: str = "local", output=None,
             radius: float | None = None, dedup: bool = False, **kw):
    """For each left row, its k nearest rows of the indexed table ``right`` (and/or all within ``radius``);
    a self-join with ``dedup=True`` keeps each unordered pair once. Returns a JoinResult (the pairs as a
    pyarrow Table, with ``.report``); ``output=`` writes a Parquet folder exactly once. See lakevec.join."""
    from .join import knn_join as _knn_join
    return _knn_join(left, right, k=k, nprobe=nprobe, radius=radius, engine=engine, output=output, dedup=dedup,
                     **kw)


def dedup(table, threshold: float, k: int = 10, output=None, **kw):
    """Duplicate groups of ``table``: connected components of its pairs within ``threshold`` (group_id, id,
    group_size, distance_to_representative, ...), with ``.summary``, ``.pairs`` and ``.report``. See
    lakevec.join.groups."""
    from .join import dedup as _dedup
    return _dedup(table, threshold, k=k, output=output, **kw)


__all__ = [
    "connect", "Lake", "knn_join", "dedup", "LakevecError", "InvalidArgumentError", "InvalidNameError", "ValidationError",
    "SchemaError", "StorageError", "CredentialsError", "TableNotFoundError", "TableExistsError", "NotALakeError",
    "CommitConflictError", "EngineError", "IndexError_", "CacheError", "__version__",
]
