"""lakevec's own per-table metadata objects, kept beside the Lance dataset.

Layout under ``<table>/``::

    _lakevec/table.json              dim, metric, id type: written once at create_table
    _lakevec/commits/, checkpoints/  the lakevec state of every version (see ``lakevec.state``)
    _lakevec/ids/<txn>.npy           the id run of one commit (see ``lakevec.commit.ids``)
    _lakevec/rejects/<txn>.parquet   quarantined rows of one commit
    _lakevec/claims/, leases/        idempotency claims and running jobs (see ``lakevec.commit.claims``)
    index/<index_id>.json            IVF index metadata (metric, sizes, nprobe calibration); immutable
    index/<index_id>.centroids.npy   its centroids (float32, nlist x dim)

Which index is in force, and the partition of every data file, are part of the lakevec state of a
version, committed atomically with the data (``lakevec.state``): never guessed from what is on the store.
"""
from __future__ import annotations

import io
import json
import threading
from dataclasses import asdict, dataclass, field

import numpy as np

from .config import FORMAT_VERSION, INDEX_DIR, META_DIR
from .errors import IndexError_, StorageError
from .store.location import Location
from .store.objects import ObjectStore


@dataclass(frozen=True)
class TableMeta:
    """Immutable table properties written at creation."""

    name: str
    dim: int
    metric: str
    id_type: str = "int64"  # "int64" | "string"
    created_at: float = 0.0
    format_version: int = FORMAT_VERSION
    normalized: bool = False  # cosine tables store unit vectors (normalised at ingest)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TableMeta":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class IndexMeta:
    """Metadata of one IVF index object (immutable once written)."""

    index_id: str
    metric: str
    dim: int
    num_partitions: int
    read_version: int  # the data version the build read
    data_version: int | None = None  # the version its commit created (filled after commit)
    partition_sizes: list = field(default_factory=list)
    default_nprobe: int = 1
    recall_curve: list = field(default_factory=list)  # [(nprobe, recall@10 on held-out rows)]
    trained_on: int = 0
    build_seconds: float = 0.0
    created_at: float = 0.0
    stats: dict = field(default_factory=dict)  # timings of the build phases, task count, engine

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "IndexMeta":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class TableFiles:
    """Reads and writes one table's table.json and index objects through an ObjectStore."""

    def __init__(self, store: ObjectStore, table_loc: Location):
        self.store = store
        self.loc = table_loc
        self._index_cache: dict[str, tuple[IndexMeta, np.ndarray]] = {}
        self._lock = threading.Lock()

    def uri(self, *parts: str) -> str:
        return self.loc.join(*parts)

    # table.json -----------------------------------------------------------------------------
    def write_table_meta(self, meta: TableMeta) -> None:
        self.store.write_json(self.uri(META_DIR, "table.json"), meta.to_json())

    def read_table_meta(self) -> TableMeta:
        return TableMeta.from_json(self.store.read_json(self.uri(META_DIR, "table.json")))

    # index objects ----------------------------------------------------------------------------
    def write_index(self, meta: IndexMeta, centroids: np.ndarray | None, known: np.ndarray | None = None) -> None:
        """Write the centroids (unless already written: pass them as ``known``) then the metadata."""
        if centroids is not None:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(centroids, dtype=np.float32))
            self.store.write_bytes(self.uri(INDEX_DIR, f"{meta.index_id}.centroids.npy"), buf.getvalue())
        else:
            centroids = known
        self.store.write_json(self.uri(INDEX_DIR, f"{meta.index_id}.json"), meta.to_json())
        with self._lock:
            self._index_cache[meta.index_id] = (meta, np.asarray(centroids, dtype=np.float32))

    def centroids(self, index_id: str) -> np.ndarray:
        """Return the centroids of an index (kept in memory once read)."""
        with self._lock:
            hit = self._index_cache.get(index_id)
        if hit is not None:
            return hit[1]
        uri = self.uri(INDEX_DIR, f"{index_id}.centroids.npy")
        try:
            raw = self.store.read_bytes(uri)
        except StorageError as e:
            raise IndexError_(f"the centroids of index {index_id} of table {self.loc.uri} cannot be read: {e}") from e
        cents = np.load(io.BytesIO(raw), allow_pickle=False)
        with self._lock:
            self._index_cache.setdefault(index_id, (None, cents))
        return cents

    def read_index(self, index_id: str) -> tuple[IndexMeta, np.ndarray]:
        """Return (metadata, centroids) of an index object."""
        with self._lock:
            hit = self._index_cache.get(index_id)
        if hit is not None and hit[0] is not None:
            return hit
        try:
            meta = IndexMeta.from_json(self.store.read_json(self.uri(INDEX_DIR, f"{index_id}.json")))
        except StorageError as e:
            raise IndexError_(f"index {index_id} of table {self.loc.uri} cannot be read: {e}") from e
        cents = self.centroids(index_id)
        with self._lock:
            self._index_cache[index_id] = (meta, cents)
        return meta, cents


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)
