"""The IVF model in memory: centroids, metric, assignment of rows and probing of queries."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..search.kernels import partial_scores, scaled_queries, sq_norms, topk_rows

ASSIGN_CHUNK = 32768


@dataclass
class IvfModel:
    """Centroids plus the rule that maps vectors to partitions (nearest centroid)."""

    centroids: np.ndarray  # float32 (nlist, dim)
    metric: str
    _norms: np.ndarray | None = field(default=None, repr=False)

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    def _cmetric(self) -> str:
        # dot tables probe and assign by inner product (as faiss IVF with METRIC_INNER_PRODUCT);
        # l2 and cosine (unit vectors) by L2 to the centroid.
        return "dot" if self.metric == "dot" else "l2"

    def centroid_scores(self, x: np.ndarray) -> np.ndarray:
        """Return (len(x), nlist) scores that order centroids by distance (per-row constant dropped)."""
        if self._norms is None:
            self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
            self._norms = sq_norms(self.centroids)
        m = self._cmetric()
        return partial_scores(scaled_queries(np.asarray(x, dtype=np.float32), m), self.centroids, m, self._norms)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Return the partition (int32) of every row of ``x``, in chunks to bound memory."""
        out = np.empty(len(x), dtype=np.int32)
        for s in range(0, len(x), ASSIGN_CHUNK):
            out[s:s + ASSIGN_CHUNK] = np.argmin(self.centroid_scores(x[s:s + ASSIGN_CHUNK]), axis=1)
        return out

    def probe(self, q: np.ndarray, nprobe: int) -> np.ndarray:
        """Return the ``nprobe`` nearest partitions of every query, nearest first (m, nprobe)."""
        nprobe = max(1, min(nprobe, self.nlist))
        return topk_rows(self.centroid_scores(q), nprobe)[0]

    def rank_partitions(self, q: np.ndarray) -> np.ndarray:
        """Return every partition ordered by distance for each query (m, nlist)."""
        return np.argsort(self.centroid_scores(q), axis=1, kind="stable")
