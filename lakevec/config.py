"""Option names, defaults and the object-store price table, in one place."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

FORMAT_VERSION = 2  # 2: lakevec state in commit records (lakevec.state); 1 used partition-map sidecars
LAKE_MARKER = "_lakevec.json"
DATA_DIR = "data.lance"
INDEX_DIR = "index"
META_DIR = "_lakevec"

ID_COLUMN = "id"
VECTOR_COLUMN = "vector"
PARTITION_COLUMN = "_partition"
UNASSIGNED = -1  # _partition value of rows written before any index exists

METRICS = ("l2", "cosine", "dot")
TABLE_NAME_PATTERN = r"[A-Za-z0-9_-]{1,128}"

# Object store: every store call fails within this many seconds of the store going silent (a StorageError),
# never a hang. Per lake: storage option ``store_timeout`` (seconds); default: ``$LAKEVEC_STORE_TIMEOUT`` or 60.
STORE_TIMEOUT = 60.0
STORE_TIMEOUT_ENV = "LAKEVEC_STORE_TIMEOUT"
STORE_TIMEOUT_OPTION = "store_timeout"

# Ingestion
MAX_ROWS_PER_FILE = 1 << 18  # fragments of an unindexed table (~128 MB at 128-d): bounds scan memory
INGEST_BATCH_ROWS = 65536  # rows validated/written per step (bounds memory)
MAX_REPORTED_PROBLEMS = 5  # bad rows named in an error message

# Index
KMEANS_ITERATIONS = 20
KMEANS_MAX_POINTS_PER_CENTROID = 256  # training sample = nlist * this (faiss's default cap)
CALIBRATION_QUERIES = 100  # table rows used as calibration queries (noise of the estimate ~0.5%)
CALIBRATION_TARGET_RECALL = 0.98  # recall@10 the default nprobe aims at; margin over the 0.95 target because
# the calibration queries are table rows and real queries may be slightly harder (measured: 0.97 -> 0.953)
CALIBRATION_K = 10


def default_num_partitions(num_rows: int) -> int:
    """Return the default IVF partition count for a table of ``num_rows`` rows.

    sqrt(n) keeps partitions large enough for efficient object-store reads (~1k rows of 128-d
    float32 = 512 KB at 1M rows) while probing only a small fraction of the table; at least ~40 rows
    per partition so tiny tables do not fragment into many objects.
    """
    if num_rows <= 0:
        return 1
    return max(1, min(int(round(math.sqrt(num_rows))), num_rows // 40 or 1, 65536))


# Search
SEARCH_QUERY_BLOCK = 4096  # queries scored per matrix product chunk
SEARCH_PREFETCH = 2  # reader threads for a local-disk lake (reads are fast, keep memory low)
SEARCH_IO_THREADS_REMOTE = 16  # reader threads for object storage (hide per-request latency)
SEARCH_THREADS = max(1, os.cpu_count() or 1)  # scoring threads, BLAS single-threaded in each
# In-process LRU of decoded partitions: small, so batch searches over big tables still stream. Used by
# default only when no NVMe cache is configured (then the NVMe tier is the hot tier, and counts stay clear).
MEMORY_CACHE_BYTES = int(os.environ.get("LAKEVEC_MEMORY_CACHE_BYTES", 256 << 20))


@dataclass(frozen=True)
class PriceTable:
    """Object-store prices in USD used to turn request/byte counts into an estimated cost.

    Defaults: public S3 Standard (us-east-1) list prices.
    """

    put_per_1000: float = 0.005  # PUT, COPY, POST, LIST
    get_per_1000: float = 0.0004  # GET and all other requests
    storage_gb_month: float = 0.023
    egress_per_gb: float = 0.0  # same-region reads are free

    def cost(self, gets: int = 0, puts: int = 0, lists: int = 0, bytes_out: int = 0) -> float:
        """Return the estimated USD cost of the given request and byte counts."""
        return (
            gets / 1000 * self.get_per_1000
            + (puts + lists) / 1000 * self.put_per_1000
            + bytes_out / 1e9 * self.egress_per_gb
        )


@dataclass
class CacheConfig:
    """NVMe cache settings (see lakevec.cache)."""

    cache_dir: str | None = None
    cache_bytes: int = 8 << 30
    prices: PriceTable = field(default_factory=PriceTable)
