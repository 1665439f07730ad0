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


def knn_join(left, right, k: int = 10, nprobe: int | None = None, engine: str = "local", output=None, **kw):
    """Return, for each left row, its k nearest rows of the indexed table ``right`` (see lakevec.join)."""
    from .join import knn_join as _knn_join
    return _knn_join(left, right, k=k, nprobe=nprobe, engine=engine, output=output, **kw)


__all__ = [
    "connect", "Lake", "knn_join", "LakevecError", "InvalidArgumentError", "InvalidNameError", "ValidationError",
    "SchemaError", "StorageError", "CredentialsError", "TableNotFoundError", "TableExistsError", "NotALakeError",
    "CommitConflictError", "EngineError", "IndexError_", "CacheError", "__version__",
]
