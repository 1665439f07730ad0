"""lakevec's own per-table metadata objects, kept beside the Lance dataset.

Layout under ``<table>/``::

    _lakevec/table.json              dim, metric, id type: written once at create_table
    _lakevec/partmaps/<txn>.json     partition map sidecar: data file name -> (index id, partition)
    _lakevec/ingest/<key>.json       idempotency record of one ingestion (key -> committed version)
    _lakevec/rejects.lance           quarantined rows with their reason (on_bad_rows="quarantine")
    index/<index_id>.json            IVF index metadata (metric, sizes, data version, nprobe calibration)
    index/<index_id>.centroids.npy   its centroids (float32, nlist x dim)

The partition map is atomic with the data because a sidecar is written *before* the Lance commit
that adds its files and is keyed by data file name (file names are unique UUIDs and immutable): a
reader of version v knows the partition of every fragment of v from the sidecars, without reading
vectors. A sidecar whose commit never happened names files that no version references; it is
harmless and ``vacuum`` removes it. A fragment with no entry (written before any index, or by a
concurrent writer unaware of a new index) is "unassigned" and is scanned by every query, so reads
stay correct in every interleaving.
"""
from __future__ import annotations

import io
import json
import threading
import time
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
    """Reads and writes one table's metadata objects through an ObjectStore."""

    def __init__(self, store: ObjectStore, table_loc: Location):
        self.store = store
        self.loc = table_loc
        self._partmaps: dict[str, dict] = {}  # sidecar name -> {file: (index_id, pid)}; immutable
        self._index_cache: dict[str, tuple[IndexMeta, np.ndarray]] = {}
        self._lock = threading.Lock()

    def uri(self, *parts: str) -> str:
        return self.loc.join(*parts)

    # table.json -----------------------------------------------------------------------------
    def write_table_meta(self, meta: TableMeta) -> None:
        self.store.write_json(self.uri(META_DIR, "table.json"), meta.to_json())

    def read_table_meta(self) -> TableMeta:
        return TableMeta.from_json(self.store.read_json(self.uri(META_DIR, "table.json")))

    # partition maps ---------------------------------------------------------------------------
    def write_partmap(self, txn: str, index_id: str, files: dict[str, int]) -> None:
        """Write the sidecar mapping data file names to partitions, before the Lance commit."""
        body = {"index_id": index_id, "files": {f: int(p) for f, p in files.items()}, "written_at": time.time()}
        self.store.write_json(self.uri(META_DIR, "partmaps", f"{txn}.json"), body)
        with self._lock:
            self._partmaps[f"{txn}.json"] = {f: (index_id, int(p)) for f, p in files.items()}

    def load_partmaps(self) -> dict[str, tuple[str, int]]:
        """Return {data file name: (index_id, partition)} over all sidecars (one LIST + new GETs)."""
        names = [n for n in self.store.list_names(self.uri(META_DIR, "partmaps")) if n.endswith(".json")]
        merged: dict[str, tuple[str, int]] = {}
        for n in names:
            with self._lock:
                m = self._partmaps.get(n)
            if m is None:
                try:
                    body = self.store.read_json(self.uri(META_DIR, "partmaps", n))
                except StorageError:
                    continue  # deleted by a concurrent vacuum: it only named unreferenced files
                m = {f: (body["index_id"], int(p)) for f, p in body["files"].items()}
                with self._lock:
                    self._partmaps[n] = m
            merged.update(m)
        return merged

    def partmap_names(self) -> list[str]:
        return [n for n in self.store.list_names(self.uri(META_DIR, "partmaps")) if n.endswith(".json")]

    def delete_partmap(self, name: str) -> None:
        self.store.delete(self.uri(META_DIR, "partmaps", name))
        with self._lock:
            self._partmaps.pop(name, None)

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

    def update_index_meta(self, meta: IndexMeta) -> None:
        """Rewrite an index's metadata JSON (only to record the committed data version)."""
        self.store.write_json(self.uri(INDEX_DIR, f"{meta.index_id}.json"), meta.to_json())
        with self._lock:
            if meta.index_id in self._index_cache:
                self._index_cache[meta.index_id] = (meta, self._index_cache[meta.index_id][1])

    def read_index(self, index_id: str) -> tuple[IndexMeta, np.ndarray]:
        """Return (metadata, centroids) of an index; centroids stay in memory once read."""
        with self._lock:
            hit = self._index_cache.get(index_id)
        if hit is not None:
            return hit
        try:
            meta = IndexMeta.from_json(self.store.read_json(self.uri(INDEX_DIR, f"{index_id}.json")))
            raw = self.store.read_bytes(self.uri(INDEX_DIR, f"{index_id}.centroids.npy"))
        except StorageError as e:
            raise IndexError_(f"index {index_id} of table {self.loc.uri} cannot be read: {e}") from e
        cents = np.load(io.BytesIO(raw))
        with self._lock:
            self._index_cache[index_id] = (meta, cents)
        return meta, cents

    def index_ids(self) -> list[str]:
        return [n[: -len(".json")] for n in self.store.list_names(self.uri(INDEX_DIR)) if n.endswith(".json")]

    # ingestion records --------------------------------------------------------------------------
    def read_ingest_record(self, key: str) -> dict | None:
        uri = self.uri(META_DIR, "ingest", f"{key}.json")
        try:
            return self.store.read_json(uri)
        except StorageError as e:
            if "not found" in str(e):
                return None
            raise

    def write_ingest_record(self, key: str, record: dict) -> None:
        self.store.write_json(self.uri(META_DIR, "ingest", f"{key}.json"), record)


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True)
