"""Fixtures of the cache tests: one indexed table on the embedded S3 server, shared read-only by the module,
with reference search results computed without a cache."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pytest

import lakevec

DIM = 32
ROWS = 12000
PARTITIONS = 30
NPROBE = 4


@dataclass
class S3Table:
    uri: str  # lake root
    storage_options: dict
    name: str
    queries: np.ndarray
    expected: object  # pyarrow Table: search(queries, k=10, nprobe=NPROBE) without a cache
    data_bytes: int  # bytes of all data files
    partition_bytes: dict  # partition -> bytes

    def connect(self, cache_dir=None, cache_bytes=None, storage_options=None):
        lake = lakevec.connect(self.uri, storage_options=storage_options or self.storage_options,
                               cache_dir=None if cache_dir is None else str(cache_dir), cache_bytes=cache_bytes)
        return lake, lake.open_table(self.name)

    def search(self, table, queries=None, **kw):
        kw.setdefault("k", 10)
        kw.setdefault("nprobe", NPROBE)
        return table.search(self.queries if queries is None else queries, **kw)


@pytest.fixture(scope="session")
def s3_table(s3_server) -> S3Table:
    uri = s3_server.uri("lakevec", f"cache-{uuid.uuid4().hex[:8]}")
    lake = lakevec.connect(uri, storage_options=s3_server.storage_options)
    t = lake.create_table("vecs", dim=DIM)
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((PARTITIONS, DIM)).astype(np.float32) * 4
    x = (centers[rng.integers(0, PARTITIONS, ROWS)] + rng.standard_normal((ROWS, DIM))).astype(np.float32)
    t.add({"id": np.arange(ROWS), "vector": x, "tag": np.arange(ROWS) % 7})
    t.build_index(num_partitions=PARTITIONS)
    snap = t.snapshot()
    assert all(len(frs) >= 1 for frs in snap.by_partition.values())
    queries = (x[rng.choice(ROWS, 20, replace=False)] + 0.1 * rng.standard_normal((20, DIM))).astype(np.float32)
    expected = t.search(queries, k=10, nprobe=NPROBE)
    pbytes = {p: sum(f.file_size for f in frs) for p, frs in snap.by_partition.items()}
    return S3Table(uri, dict(s3_server.storage_options), "vecs", queries, expected, sum(pbytes.values()), pbytes)

