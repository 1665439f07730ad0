"""k-means training for IVF centroids: faiss when available (fast, multithreaded), numpy otherwise."""
from __future__ import annotations

import numpy as np

from ..config import KMEANS_ITERATIONS


def train_kmeans(sample: np.ndarray, k: int, metric: str, niter: int = KMEANS_ITERATIONS,
                 seed: int = 1234) -> np.ndarray:
    """Return ``k`` float32 centroids trained on ``sample`` (cosine: spherical k-means)."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k = max(1, min(k, len(sample)))
    try:
        import faiss  # lazily: optional at import time of lakevec
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        return _numpy_kmeans(sample, k, niter, seed, spherical=metric == "cosine")
    km = faiss.Kmeans(sample.shape[1], k, niter=niter, seed=seed, spherical=metric == "cosine",
                      max_points_per_centroid=max(1, len(sample) // k + 1), verbose=False)
    km.train(sample)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _numpy_kmeans(x: np.ndarray, k: int, niter: int, seed: int, spherical: bool) -> np.ndarray:
    """Plain Lloyd iterations with BLAS distances (fallback, and reference for tests)."""
    from ..search.kernels import distances

    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(niter):
        a = np.argmin(distances(x, c, "l2"), axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, a, x)
        counts = np.bincount(a, minlength=k).astype(np.float32)
        empty = counts == 0
        c[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():  # re-seed empty clusters on random points
            c[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
        if spherical:
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return c
