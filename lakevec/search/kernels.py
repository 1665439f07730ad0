"""Distance and top-k kernels: BLAS matrix products and partial sorts, no I/O, no scheduling.

Distances are "smaller is nearer": squared L2 for ``l2``, ``1 - cos`` for ``cosine`` (vectors and
queries are unit-normalised, so it is ``1 - q.x``), and ``-q.x`` for ``dot``.

The hot loop works on *partial scores* that differ from the distance by a per-query constant
(``||q||^2`` for l2, ``1`` for cosine), so ranking needs one GEMM plus one broadcast add and the
constant is added only to the k survivors (``finish``).
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Return the squared L2 norm of every row of ``x`` (float32)."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float32)


def scaled_queries(q: np.ndarray, metric: str) -> np.ndarray:
    """Return the query matrix that makes ``scaled @ x.T`` the partial score (-2q for l2, -q else)."""
    return np.ascontiguousarray(q * (-2.0 if metric == "l2" else -1.0), dtype=np.float32)


def partial_scores(qs: np.ndarray, x: np.ndarray, metric: str, x_norms: np.ndarray | None = None) -> np.ndarray:
    """Return ``distance - per-query constant`` for scaled queries ``qs`` against rows ``x``."""
    s = qs @ x.T  # the BLAS call that does the work
    if metric == "l2":
        s += sq_norms(x) if x_norms is None else x_norms
    return s


def finish(scores: np.ndarray, metric: str, q_norms: np.ndarray | None) -> np.ndarray:
    """Turn partial scores of shape (m, k) into distances (adds the per-query constant)."""
    if metric == "l2":
        d = scores + q_norms[:, None]
        return np.maximum(d, 0.0, out=d)  # rounding can make tiny distances negative
    if metric == "cosine":
        d = scores + 1.0
        return np.maximum(d, 0.0, out=d)  # 1 - cos of a unit vector with itself rounds to about -1e-7
    return scores


def distances(q: np.ndarray, x: np.ndarray, metric: str, x_norms: np.ndarray | None = None,
              q_norms: np.ndarray | None = None) -> np.ndarray:
    """Return the full (len(q), len(x)) distance matrix under ``metric``."""
    if metric not in ("l2", "cosine", "dot"):
        raise InvalidArgumentError(f"unknown metric {metric!r}: expected l2, cosine or dot")
    s = partial_scores(scaled_queries(q, metric), x, metric, x_norms)
    if metric == "l2":
        s += (sq_norms(q) if q_norms is None else q_norms)[:, None]
        np.maximum(s, 0.0, out=s)
    elif metric == "cosine":
        s += 1.0
        np.maximum(s, 0.0, out=s)
    return s


def topk_rows(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (indices, values) of the ``k`` smallest entries of each row of ``d``, sorted."""
    n = d.shape[1]
    if k >= n:
        idx = np.argsort(d, axis=1, kind="stable")
    else:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(d, idx, axis=1)


class TopK:
    """Running top-k per query: merges candidate blocks as partitions are scored (not thread-safe)."""

    def __init__(self, m: int, k: int):
        self.k = k
        self.dist = np.full((m, k), np.inf, dtype=np.float32)
        self.ref = np.full((m, k), -1, dtype=np.int64)  # caller-defined row reference (-1 = empty)

    def merge(self, qidx: np.ndarray, cand_dist: np.ndarray, cand_ref: np.ndarray) -> None:
        """Merge candidates (len(qidx), c) into the running top-k of queries ``qidx``."""
        d = np.concatenate([self.dist[qidx], cand_dist.astype(np.float32, copy=False)], axis=1)
        r = np.concatenate([self.ref[qidx], cand_ref], axis=1)
        sel, sd = topk_rows(d, self.k)
        self.dist[qidx] = sd
        self.ref[qidx] = np.take_along_axis(r, sel, axis=1)

    def merge_from(self, other: "TopK") -> None:
        """Merge another TopK over the same queries into this one."""
        self.merge(np.arange(len(self.dist)), other.dist, other.ref)

    def found(self) -> np.ndarray:
        """Return the number of filled slots per query."""
        return (self.ref >= 0).sum(axis=1)
