"""k-means training for IVF centroids, with faiss (a core dependency: fast, multithreaded)."""
from __future__ import annotations

import numpy as np

from ..config import KMEANS_ITERATIONS


def train_kmeans(sample: np.ndarray, k: int, metric: str, niter: int = KMEANS_ITERATIONS,
                 seed: int = 1234) -> np.ndarray:
    """Return ``k`` float32 centroids trained on ``sample`` (cosine: spherical k-means); ``seed`` makes the
    result reproducible on one machine."""
    import faiss  # lazily: a large native library, needed only by index builds

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k = max(1, min(k, len(sample)))
    km = faiss.Kmeans(sample.shape[1], k, niter=niter, seed=seed, spherical=metric == "cosine",
                      max_points_per_centroid=max(1, len(sample) // k + 1), verbose=False)
    km.train(sample)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)
