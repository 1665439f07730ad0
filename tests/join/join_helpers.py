"""Brute force and small builders for the join tests."""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def vectors(n: int, dim: int = 8, seed: int = 0, clusters: int = 6) -> np.ndarray:
    """Clustered float32 vectors (so IVF partitions mean something), no exact ties."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)) * 3
    return (centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def make_table(lake, name, x, metric="l2", ids=None, nlist=8, extra=None):
    t = lake.create_table(name, dim=x.shape[1], metric=metric, id_type="string" if ids is not None and
                          isinstance(ids[0], str) else "int64")
    data = {"id": np.arange(len(x)) if ids is None else ids, "vector": x}
    if extra:
        data.update(extra)
    t.add(data)
    t.build_index(num_partitions=nlist)
    return t


def distances(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """Exact distances in float64 under lakevec's definitions."""
    q = q.astype(np.float64)
    x = x.astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1.0 - qn @ xn.T
    return -(q @ x.T)


def brute_knn(q, x, k, metric, exclude_self=False):
    d = distances(q, x, metric)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def by_left(res) -> dict:
    """{left_id: [right ids in rank order]} of a join result (checks ranks are 0..n-1 per row)."""
    t = res.table if hasattr(res, "report") else res
    out: dict = {}
    for l, r, rank in zip(t.column("left_id").to_pylist(), t.column("right_id").to_pylist(),
                          t.column("rank").to_pylist()):
        lst = out.setdefault(l, [])
        assert rank == len(lst), f"rank {rank} of left row {l} after {len(lst)} rows"
        lst.append(r)
    return out


def pair_set(res) -> set:
    t = res.table if hasattr(res, "report") else res
    return set(zip(t.column("left_id").to_pylist(), t.column("right_id").to_pylist()))


def fsl(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
