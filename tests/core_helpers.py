"""Helpers shared by the behaviour tests of the lake core (tests/test_lake.py, tests/ingest, tests/index,
tests/search, tests/store/test_location.py, tests/test_errors.py).

    from core_helpers import hermetic_aws, make_rows, brute_force, write_parquet, assert_unchanged
"""
from __future__ import annotations

import io
import os
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakevec

_KEEP = {"AWS_CA_BUNDLE"}


@pytest.fixture
def hermetic_aws(monkeypatch, tmp_path):
    """Remove every AWS_* variable so only the storage options a test passes are used.

    The SDK default chain is pointed at missing files and instance metadata is disabled, so a test never
    picks up the machine's credentials and never waits on an IMDS timeout.
    """
    for name in list(os.environ):
        if name.startswith("AWS_") and name not in _KEEP:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def make_rows(n: int, dim: int = 8, start: int = 0, seed: int = 0, tag: bool = True) -> dict:
    """Return a dict input: int64 ids start..start+n, float32 (n, dim) vectors, optional int64 ``tag`` = id % 5."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    d = {"id": ids, "vector": rng.standard_normal((n, dim)).astype(np.float32)}
    if tag:
        d["tag"] = ids % 5
    return d


def arrow_rows(n: int, dim: int = 8, start: int = 0, seed: int = 0, tag: bool = True) -> pa.Table:
    """Return make_rows(...) as a pyarrow Table with a fixed_size_list<float32> vector column."""
    d = make_rows(n, dim, start, seed, tag)
    cols = {"id": pa.array(d["id"]),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(d["vector"].ravel()), dim)}
    if tag:
        cols["tag"] = pa.array(d["tag"])
    return pa.table(cols)


def table_vectors(t, order_by_id: bool = True):
    """Return (ids, float32 vectors, arrow table) of every row of table ``t``, sorted by id."""
    tbl = t.to_arrow()
    if order_by_id:
        tbl = tbl.sort_by("id")
    ids = np.asarray(tbl.column("id").to_pylist())
    vec = np.stack(tbl.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32) if tbl.num_rows else \
        np.empty((0, t.meta.dim), np.float32)
    return ids, vec, tbl


def brute_force(X: np.ndarray, Q: np.ndarray, k: int, metric: str):
    """Exact top-k (indices, distances) in float64 under lakevec's distance definitions."""
    X = np.asarray(X, dtype=np.float64)
    Q = np.atleast_2d(np.asarray(Q, dtype=np.float64))
    if metric == "l2":
        D = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    elif metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        D = 1.0 - Qn @ Xn.T
    elif metric == "dot":
        D = -(Q @ X.T)
    else:
        raise ValueError(metric)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(D, idx, axis=1)


def result_matrix(res: pa.Table, m: int, k: int):
    """Return (ids (m, k), distances (m, k)) of a search result holding exactly k rows per query."""
    assert res.num_rows == m * k, f"expected {m * k} result rows, got {res.num_rows}"
    qi = np.asarray(res.column("query_index").to_pylist())
    rk = np.asarray(res.column("rank").to_pylist())
    assert np.array_equal(qi, np.repeat(np.arange(m), k)), "results not sorted by query_index"
    assert np.array_equal(rk, np.tile(np.arange(k), m)), "results not sorted by rank"
    ids = np.asarray(res.column("id").to_pylist()).reshape(m, k)
    dist = np.asarray(res.column("distance").to_pylist(), dtype=np.float64).reshape(m, k)
    return ids, dist


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_size)
    return buf.getvalue()


def source_root(storage, tmp_path) -> str:
    """Return a fresh folder for Parquet sources next to the storage kind (local dir or s3:// prefix)."""
    if storage.kind == "local":
        p = tmp_path / f"src-{uuid.uuid4().hex[:8]}"
        p.mkdir()
        return str(p)
    return storage.uri.rsplit("/", 1)[0] + f"/src-{uuid.uuid4().hex}"


def write_parquet(storage, root: str, rel: str, table: pa.Table, row_group_size: int | None = None) -> str:
    """Write ``table`` as Parquet at ``root/rel`` (local path or s3://) and return its URI."""
    uri = f"{root}/{rel}"
    data = parquet_bytes(table, row_group_size)
    if uri.startswith("s3://"):
        from lakevec.store.location import parse_location
        from lakevec.store.objects import ObjectStore
        store = ObjectStore(parse_location(uri, storage.storage_options))
        store.write_bytes(uri, data)
    else:
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        with open(uri, "wb") as f:
            f.write(data)
    return uri


def data_files(t) -> set[str]:
    """Return the names of every object under the table's data.lance/data folder."""
    infos = t.store.list(t.data_uri + "/data", recursive=True)
    import pyarrow.fs as pafs
    return {i.base_name for i in infos if i.type == pafs.FileType.File}


class TableState:
    """Version and row count of a table, to assert that a failed operation left no trace."""

    def __init__(self, t):
        self.t = t
        self.version = t.version
        self.rows = t.count_rows()
        self.files = data_files(t)

    def assert_unchanged(self, files: bool = True):
        t = self.t
        assert t.version == self.version, f"version moved from {self.version} to {t.version}"
        assert t.count_rows() == self.rows, f"row count moved from {self.rows} to {t.count_rows()}"
        if files:
            extra = data_files(t) - self.files
            assert not extra, f"uncommitted data files left behind: {sorted(extra)}"


def assert_lakevec_error(excinfo, *needles: str):
    """Assert the raised error is a LakevecError whose message contains every needle (case-insensitive)."""
    err = excinfo.value
    assert isinstance(err, lakevec.LakevecError), f"{type(err).__name__} is not a LakevecError: {err}"
    msg = str(err).lower()
    for n in needles:
        assert n.lower() in msg, f"{n!r} not in error message: {err}"
    return err
