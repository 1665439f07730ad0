"""Peers for ``lakevec bench search``, and the harness that measures any peer the same way.

A peer has a uniform interface (``Peer``):

- ``name``; ``kind``: ``"batch"`` (one call answers all queries) or ``"per_query"`` (one call per query);
- ``build(...) -> dict`` (timings; each peer's own arguments, timed separately from search);
- ``search(queries, k, nprobe) -> ids int64 (m, k)`` (``-1`` pads missing results);
- ``search_one(q, k, nprobe) -> ids (k,)``; ``bytes_read() -> int | None`` (since the last call, then reset);
- ``info() -> dict``; ``close()`` frees memory.

Peers here:

- ``LanceIvfFlatPeer(uri, storage_options=None, kind="per_query")`` -- Lance's own IVF_FLAT index on a plain
  Lance dataset ``(id, vector)``: ``build(data=None, nlist=..., metric="l2", sample_rate=256)`` writes the
  dataset (unless ``data`` is None) and runs ``create_index("vector", "IVF_FLAT", num_partitions=nlist)``;
  an index with the same nlist/metric is reused unless ``rebuild=True``. Search is
  ``ds.to_table(nearest={"column": "vector", "q": q, "k": k, "nprobes": nprobe}, columns=["id"])``:
  ``nprobes`` sets both minimum and maximum probes (no adaptive extra probing), ``refine_factor`` is left
  unset (no refine; IVF_FLAT distances are exact anyway). ``kind="per_query"`` is the peer of the targets;
  ``kind="batch"`` measures Lance's 2-D ``q`` batch query (extra information). ``search`` (used for recall
  sweeps) always uses the 2-D batch path, which returns the same ids as per-query calls.
  Bytes read: ``ds.io_stats_incremental().read_bytes`` (index partitions are cached in Lance's index cache
  after the first read; a fresh peer is cold).
- ``FaissIvfFlatPeer(threads=None)`` -- ``faiss.IndexIVFFlat`` in memory: ``build(data, nlist, metric,
  train_rows=256 * nlist)`` (the same sample size as Lance's default ``sample_rate=256``), ``omp`` threads.
- ``BruteForcePeer(data, metric)`` -- exact search with numpy BLAS over chunks (array, memmap,
  ``BenchDataset`` or Parquet files; the latter count ``bytes_read``).
- ``CallablePeer(name, search_fn, kind="batch", ...)`` -- wraps any function, e.g. lakevec's
  ``table.search`` (``table_to_ids`` turns its result table into an ids matrix).

Harness:

- ``run_peer(peer, queries, true_ids, k=10, nprobe=None, max_queries=None, ...) -> dict`` -- one measured
  run: recall@k, queries/s, p50/p95/p99 latency, bytes read, peak RSS (``measure.PeakRSS``). Per-query peers
  time each call. With ``max_queries`` a peer answers a fixed random sample of the queries (seeded, the
  same for every peer) and queries/s is extrapolated (``"extrapolated": true``, ``n_measured``; recall is
  then over the sample). Batch peers time one call; their latency fields
  are batch time / m (``latency_source="batch/m"``), and ``single_p50_ms``/``single_p95_ms`` come from
  ``single_query_samples`` separate one-query calls. ``cpu_seconds`` / ``cpu_util`` (process CPU time over
  wall time, e.g. ~2.0 for two busy threads) show whether a peer was starved by other load on the machine;
  ``queries_per_cpu_s`` is a throughput less sensitive to that load.
- ``sweep_nprobe(peer, queries, true_ids, nprobes, ...) -> list of run_peer dicts``.
- ``nprobe_for_recall(peer, queries, true_ids, target, k=10, max_nprobe=...) -> (nprobe, recall)`` -- the
  smallest nprobe whose recall@k reaches ``target`` (doubling, then bisection; IVF with exact distances is
  monotone in nprobe on a fixed query set). ``at_equal_recall(...)`` then runs ``run_peer`` at that nprobe, labelled
  ``"<name>@recall"``, so queries/s can be compared at equal recall.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .datasets import BenchDataset, exact_knn, vectors_to_arrow, arrow_schema
from .measure import PeakRSS, latency_percentiles, recall_at_k

METRIC_TO_LANCE = {"l2": "L2", "cosine": "cosine", "dot": "dot"}


# ----------------------------------------------------------------------------------------------
# data sources
# ----------------------------------------------------------------------------------------------

def _iter_source(data, chunk_rows: int = 65536) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(ids, vectors)`` chunks from an array/memmap, a BenchDataset, Parquet files or an iterable."""
    if isinstance(data, BenchDataset):
        yield from data.iter_chunks(chunk_rows)
    elif isinstance(data, np.ndarray):
        for s in range(0, len(data), chunk_rows):
            yield (np.arange(s, min(s + chunk_rows, len(data)), dtype=np.int64),
                   np.asarray(data[s:s + chunk_rows], dtype=np.float32))
    elif isinstance(data, (str, Path)) or (isinstance(data, (list, tuple)) and data
                                           and isinstance(data[0], (str, Path))):
        yield from _iter_parquet([data] if isinstance(data, (str, Path)) else data, chunk_rows)
    else:
        pos = 0
        for item in data:
            if isinstance(item, tuple):
                yield np.asarray(item[0], dtype=np.int64), np.asarray(item[1], dtype=np.float32)
            else:
                item = np.asarray(item, dtype=np.float32)
                yield np.arange(pos, pos + len(item), dtype=np.int64), item
                pos += len(item)


def _iter_parquet(paths, chunk_rows):
    import pyarrow.parquet as pq
    for p in paths:
        f = pq.ParquetFile(str(p))
        for rb in f.iter_batches(batch_size=chunk_rows, columns=["id", "vector"]):
            col = rb.column(1)
            dim = col.type.list_size
            yield (rb.column(0).to_numpy(),
                   col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False))


def _source_len(data) -> int | None:
    if isinstance(data, (BenchDataset, np.ndarray)):
        return len(data.base) if isinstance(data, BenchDataset) else len(data)
    return None


def table_to_ids(table, m: int, k: int, query_col: str = "query_index", id_col: str = "id") -> np.ndarray:
    """A search result table (``query_index``, ``id``, sorted by query then rank) -> ids ``(m, k)``, -1 padded."""
    out = np.full((m, k), -1, dtype=np.int64)
    if table.num_rows == 0:
        return out
    qi = table.column(query_col).to_numpy().astype(np.int64)
    ids = table.column(id_col).to_numpy().astype(np.int64)
    order = np.argsort(qi, kind="stable")
    qi, ids = qi[order], ids[order]
    starts = np.searchsorted(qi, qi, side="left")
    rank = np.arange(len(qi)) - starts
    keep = rank < k
    out[qi[keep], rank[keep]] = ids[keep]
    return out


# ----------------------------------------------------------------------------------------------
# peers
# ----------------------------------------------------------------------------------------------

class Peer:
    """Base class: see the module docstring for the interface."""
    name = "peer"
    kind = "batch"

    def build(self, *args, **kwargs) -> dict:
        return {}

    def search(self, queries: np.ndarray, k: int, nprobe: int | None) -> np.ndarray:
        raise NotImplementedError

    def search_one(self, q: np.ndarray, k: int, nprobe: int | None) -> np.ndarray:
        return self.search(np.asarray(q, dtype=np.float32)[None, :], k, nprobe)[0]

    def bytes_read(self) -> int | None:
        return None

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind}

    def close(self) -> None:
        pass


class CallablePeer(Peer):
    """Wrap functions: ``search_fn(queries, k, nprobe) -> ids (m,k)`` or a pyarrow result table
    (converted with ``table_to_ids``); optional ``search_one_fn(q, k, nprobe)`` and ``bytes_read_fn()``
    (bytes since the previous call)."""

    def __init__(self, name: str, search_fn: Callable, kind: str = "batch",
                 search_one_fn: Callable | None = None, bytes_read_fn: Callable | None = None,
                 info: dict | None = None):
        if kind not in ("batch", "per_query"):
            raise ValueError(f"kind must be 'batch' or 'per_query', got {kind!r}")
        self.name, self.kind = name, kind
        self._search, self._one, self._bytes = search_fn, search_one_fn, bytes_read_fn
        self._info = info or {}

    def _ids(self, res, m, k):
        if hasattr(res, "num_rows") and hasattr(res, "column"):
            return table_to_ids(res, m, k)
        return np.asarray(res, dtype=np.int64).reshape(m, -1)[:, :k]

    def search(self, queries, k, nprobe):
        queries = np.atleast_2d(queries)
        return self._ids(self._search(queries, k, nprobe), len(queries), k)

    def search_one(self, q, k, nprobe):
        if self._one is None:
            return super().search_one(q, k, nprobe)
        return self._ids(self._one(q, k, nprobe), 1, k)[0]

    def bytes_read(self):
        return None if self._bytes is None else int(self._bytes())

    def info(self):
        return {"name": self.name, "kind": self.kind, **self._info}


class LanceIvfFlatPeer(Peer):
    """Lance's native IVF_FLAT index, searched with ``to_table(nearest=...)``."""

    def __init__(self, uri: str, storage_options: dict | None = None, kind: str = "per_query",
                 name: str | None = None, concurrency: int = 1, index_cache_size_bytes: int | None = None):
        if kind not in ("batch", "per_query"):
            raise ValueError(f"kind must be 'batch' or 'per_query', got {kind!r}")
        self.uri = str(uri)
        self.storage_options = storage_options
        self.kind = kind
        self.name = name or ("lance_ivf_flat" if kind == "per_query" else "lance_ivf_flat_batch")
        self.concurrency = concurrency
        self.index_cache_size_bytes = index_cache_size_bytes
        self.ds = None
        self.nlist = None
        self.metric = "l2"
        self.build_info: dict = {}

    # -- build --------------------------------------------------------------------------------
    def open(self):
        import lance
        kw = {}
        if self.index_cache_size_bytes is not None:
            kw["index_cache_size_bytes"] = self.index_cache_size_bytes
        self.ds = lance.dataset(self.uri, storage_options=self.storage_options, **kw)
        return self.ds

    def _existing_index(self) -> dict | None:
        """The vector index already on the dataset: name, type, num_partitions, metric (or None)."""
        os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # silences a stats warning
        try:
            idx = [d for d in self.ds.describe_indices() if "vector" in (d.field_names or [])]
        except Exception:
            return None
        if not idx:
            return None
        out = {"name": idx[0].name, "index_type": idx[0].index_type,
               "metric": str((idx[0].details or {}).get("metric_type", "")).lower()}
        try:
            out["num_partitions"] = self.ds.stats.index_stats(idx[0].name)["indices"][0]["num_partitions"]
        except Exception:
            pass
        return out

    def build(self, data=None, nlist: int | None = None, metric: str = "l2", *, sample_rate: int = 256,
              rebuild: bool = False, max_rows_per_file: int = 1 << 20, chunk_rows: int = 65536) -> dict:
        """Write ``data`` (if given; overwrites) to ``uri`` and build the IVF_FLAT index.

        Returns ``{"write_s", "index_s", "index_reused", "nlist", ...}``."""
        import lance
        import pyarrow as pa
        if metric not in METRIC_TO_LANCE:
            raise ValueError(f"metric must be one of {sorted(METRIC_TO_LANCE)}, got {metric!r}")
        info = {"write_s": 0.0, "index_s": 0.0, "index_reused": False}
        if data is not None:
            chunks = _iter_source(data, chunk_rows)
            first = next(iter(chunks))
            dim = first[1].shape[1]

            def batches():
                yield from vectors_to_arrow(*first).to_batches()
                for ids, x in chunks:
                    yield from vectors_to_arrow(ids, x).to_batches()
            reader = pa.RecordBatchReader.from_batches(arrow_schema(dim), batches())
            t0 = time.perf_counter()
            lance.write_dataset(reader, self.uri, mode="overwrite", max_rows_per_file=max_rows_per_file,
                                storage_options=self.storage_options)
            info["write_s"] = time.perf_counter() - t0
            rebuild = True
        self.open()
        n = self.ds.count_rows()
        self.nlist = int(nlist or max(1, round(np.sqrt(n))))
        self.metric = metric
        existing = None if rebuild else self._existing_index()
        if (existing and existing.get("index_type") == "IVF_FLAT"
                and existing.get("num_partitions") == self.nlist
                and str(existing.get("metric", "")).lower() == metric):
            info["index_reused"] = True
        else:
            t0 = time.perf_counter()
            self.ds.create_index("vector", index_type="IVF_FLAT", num_partitions=self.nlist,
                                 metric=METRIC_TO_LANCE[metric], replace=True, sample_rate=sample_rate)
            info["index_s"] = time.perf_counter() - t0
            self.open()  # fresh handle: cold index cache, io counters from zero
        self.ds.io_stats_incremental()
        info.update({"nlist": self.nlist, "metric": metric, "rows": n, "sample_rate": sample_rate,
                     "train_rows": min(n, sample_rate * self.nlist)})
        self.build_info = info
        return info

    # -- search -------------------------------------------------------------------------------
    def _nearest(self, q, k, nprobe):
        d = {"column": "vector", "q": q, "k": int(k)}
        if nprobe is not None:
            d["nprobes"] = int(nprobe)  # sets minimum and maximum nprobes: exactly nprobe partitions
        return d

    def search_one(self, q, k, nprobe):
        t = self.ds.to_table(nearest=self._nearest(np.asarray(q, dtype=np.float32), k, nprobe),
                             columns=["id"], disable_scoring_autoprojection=True)
        ids = t.column("id").to_numpy()
        out = np.full(k, -1, dtype=np.int64)
        out[:len(ids)] = ids[:k]
        return out

    def search(self, queries, k, nprobe):
        """All queries in one 2-D ``q`` call (Lance's batch path; same ids as per-query calls)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        t = self.ds.to_table(nearest=self._nearest(queries, k, nprobe), columns=["id"],
                             disable_scoring_autoprojection=True)
        return table_to_ids(t, len(queries), k)

    def bytes_read(self):
        return int(self.ds.io_stats_incremental().read_bytes) if self.ds is not None else None

    def info(self):
        return {"name": self.name, "kind": self.kind, "uri": self.uri, "nlist": self.nlist,
                "metric": self.metric, "concurrency": self.concurrency, **{f"build_{k}": v for k, v in
                                                                          self.build_info.items()}}

    def close(self):
        self.ds = None


class FaissIvfFlatPeer(Peer):
    """faiss IndexIVFFlat in memory with the same nlist / nprobe / threads."""
    name = "faiss_ivf_flat"
    kind = "batch"

    def __init__(self, threads: int | None = None, name: str | None = None):
        import faiss
        self.faiss = faiss
        self.threads = threads or os.cpu_count() or 1
        if name:
            self.name = name
        self.index = None
        self.metric = "l2"
        self.build_info: dict = {}

    def build(self, data, nlist: int | None = None, metric: str = "l2", *, train_rows: int | None = None,
              sample_rate: int = 256, seed: int = 1234, chunk_rows: int = 65536) -> dict:
        """Train on ``train_rows`` random rows (default ``sample_rate * nlist``) and add all rows."""
        faiss = self.faiss
        faiss.omp_set_num_threads(self.threads)
        n = _source_len(data)
        if n is None:  # an iterable / Parquet: materialise once (faiss holds the vectors anyway)
            ids, xs = zip(*_iter_source(data, chunk_rows))
            data, ids_all = np.concatenate(xs), np.concatenate(ids)
            n = len(data)
        else:
            ids_all = None
        base = data.base if isinstance(data, BenchDataset) else data
        dim = base.shape[1]
        self.nlist = int(nlist or max(1, round(np.sqrt(n))))
        self.metric = metric
        train_rows = int(min(n, train_rows or sample_rate * self.nlist))
        rng = np.random.default_rng(seed)
        sample_idx = np.sort(rng.choice(n, size=train_rows, replace=False)) if train_rows < n else np.arange(n)
        t0 = time.perf_counter()
        sample = np.ascontiguousarray(base[sample_idx], dtype=np.float32)
        if metric == "cosine":
            faiss.normalize_L2(sample)
        fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        quant = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quant, dim, self.nlist, fmetric)
        index.cp.max_points_per_centroid = max(1, (train_rows + self.nlist - 1) // self.nlist)
        index.train(sample)
        del sample
        t_train = time.perf_counter() - t0
        t1 = time.perf_counter()
        for s in range(0, n, chunk_rows):
            x = np.ascontiguousarray(base[s:s + chunk_rows], dtype=np.float32)
            if metric == "cosine":
                faiss.normalize_L2(x)
            if ids_all is None:
                index.add_with_ids(x, np.arange(s, s + len(x), dtype=np.int64))
            else:
                index.add_with_ids(x, ids_all[s:s + len(x)])
        t_add = time.perf_counter() - t1
        self.index = index
        self.build_info = {"train_s": t_train, "add_s": t_add, "index_s": t_train + t_add, "nlist": self.nlist,
                           "metric": metric, "rows": n, "train_rows": train_rows, "threads": self.threads}
        return self.build_info

    def _prep(self, queries):
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.metric == "cosine":
            q = q.copy()
            self.faiss.normalize_L2(q)
        return q

    def search(self, queries, k, nprobe):
        self.faiss.omp_set_num_threads(self.threads)
        self.index.nprobe = int(nprobe or 1)
        _, ids = self.index.search(self._prep(queries), k)
        return ids.astype(np.int64, copy=False)

    def info(self):
        return {"name": self.name, "kind": self.kind, "nlist": getattr(self, "nlist", None),
                "threads": self.threads, **{f"build_{k}": v for k, v in self.build_info.items()}}

    def close(self):
        self.index = None


class BruteForcePeer(Peer):
    """Exact search with numpy BLAS over chunks of the base (nprobe is ignored)."""
    name = "brute_force"
    kind = "batch"

    def __init__(self, data, metric: str = "l2", chunk_rows: int = 65536, name: str | None = None):
        self.data, self.metric, self.chunk_rows = data, metric, chunk_rows
        if name:
            self.name = name
        self._bytes = 0
        self._parquet = isinstance(data, (str, Path)) or (isinstance(data, (list, tuple)) and data
                                                           and isinstance(data[0], (str, Path)))

    def search(self, queries, k, nprobe=None):
        ids, _ = exact_knn(_iter_source(self.data, self.chunk_rows), queries, k, self.metric, pad=0)
        if self._parquet:
            paths = [self.data] if isinstance(self.data, (str, Path)) else self.data
            self._bytes += sum(os.path.getsize(p) for p in paths)
        return ids

    def bytes_read(self):
        b, self._bytes = self._bytes, 0
        return b if self._parquet else 0

    def info(self):
        return {"name": self.name, "kind": self.kind, "metric": self.metric}


# ----------------------------------------------------------------------------------------------
# harness
# ----------------------------------------------------------------------------------------------

def _sample(m: int, max_queries: int | None, seed: int) -> np.ndarray:
    if max_queries is None or max_queries >= m:
        return np.arange(m)
    return np.sort(np.random.default_rng(seed).choice(m, size=max_queries, replace=False))


def run_peer(peer: Peer, queries: np.ndarray, true_ids: np.ndarray | None, k: int = 10,
             nprobe: int | None = None, *, max_queries: int | None = None, single_query_samples: int = 50,
             warmup: int = 0, seed: int = 0, label: str | None = None, concurrency: int | None = None) -> dict:
    """Measure one peer once (see module docstring). ``true_ids`` rows align with ``queries``.

    ``max_queries`` (any peer; meant for per-query peers and brute force on big sets) measures a fixed
    random sample of that many queries and extrapolates queries/s (``extrapolated``). ``warmup`` queries (per-query peers: single calls;
    batch peers: one call on that many queries) run before measuring, outside the measured window."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    m = len(queries)
    per_query = peer.kind == "per_query"
    sel = _sample(m, max_queries, seed)
    conc = concurrency or getattr(peer, "concurrency", 1) or 1
    if warmup:
        w = queries[np.random.default_rng(seed + 1).choice(m, size=min(warmup, m), replace=False)]
        if per_query:
            for q in w:
                peer.search_one(q, k, nprobe)
        else:
            peer.search(w, k, nprobe)
    peer.bytes_read()  # reset the counter
    lat: list[float] = []
    with PeakRSS() as mem:
        c0 = os.times()
        t0 = time.perf_counter()
        if per_query:
            ids = np.full((len(sel), k), -1, dtype=np.int64)

            def one(j):
                t = time.perf_counter()
                r = peer.search_one(queries[sel[j]], k, nprobe)
                return j, r, time.perf_counter() - t
            if conc > 1:
                with ThreadPoolExecutor(conc) as ex:
                    for j, r, dt in ex.map(one, range(len(sel))):
                        ids[j] = r
                        lat.append(dt)
            else:
                for j in range(len(sel)):
                    _, ids[j], dt = one(j)
                    lat.append(dt)
        else:
            ids = np.asarray(peer.search(queries[sel] if len(sel) < m else queries, k, nprobe))
        seconds = time.perf_counter() - t0
        c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    bytes_read = peer.bytes_read()
    n_meas = len(sel)
    qps = n_meas / seconds if seconds > 0 else float("inf")
    res = {"label": label or peer.name, "peer": peer.name, "kind": peer.kind, "k": k, "nprobe": nprobe,
           "n_queries": m, "n_measured": n_meas, "extrapolated": n_meas < m, "seconds": seconds,
           "seconds_all_queries": m / qps, "qps": qps, "bytes_read": bytes_read,
           "bytes_read_per_query": (bytes_read / n_meas) if bytes_read is not None else None,
           "concurrency": conc if per_query else None, "cpu_seconds": cpu,
           "cpu_util": cpu / seconds if seconds > 0 else None,
           "queries_per_cpu_s": n_meas / cpu if cpu > 0 else None, **mem.as_dict()}
    res["recall"] = recall_at_k(ids, np.asarray(true_ids)[sel], k) if true_ids is not None else None
    if per_query:
        res.update(latency_percentiles(lat))
        res["latency_source"] = "per_query"
        res["single_p50_ms"], res["single_p95_ms"] = res["p50_ms"], res["p95_ms"]
    else:
        per = seconds / n_meas * 1e3
        res.update({"p50_ms": per, "p95_ms": per, "p99_ms": per, "latency_source": "batch/m"})
        single = []
        for j in _sample(m, single_query_samples, seed + 2) if single_query_samples else []:
            t = time.perf_counter()
            peer.search_one(queries[j], k, nprobe)
            single.append(time.perf_counter() - t)
        sp = latency_percentiles(single, (50, 95))
        res["single_p50_ms"], res["single_p95_ms"] = sp["p50_ms"], sp["p95_ms"]
        peer.bytes_read()  # do not leak the single-query reads into the next run
    return res


def sweep_nprobe(peer: Peer, queries, true_ids, nprobes: Sequence[int], k: int = 10, **run_kw) -> list[dict]:
    """``run_peer`` at each nprobe (labels ``"<name>@nprobe=<n>"``)."""
    return [run_peer(peer, queries, true_ids, k, n, label=f"{peer.name}@nprobe={n}", **run_kw)
            for n in nprobes]


def _recall_of(peer, queries, true_ids, k, nprobe, batch_rows=2000):
    ids = np.concatenate([np.asarray(peer.search(queries[s:s + batch_rows], k, nprobe))
                          for s in range(0, len(queries), batch_rows)])
    return recall_at_k(ids, true_ids, k)


def nprobe_for_recall(peer: Peer, queries, true_ids, target: float, k: int = 10, *,
                      max_nprobe: int | None = None, max_queries: int | None = None, seed: int = 0,
                      start: int = 1, curve: dict | None = None) -> tuple[int | None, float]:
    """Smallest nprobe in ``[1, max_nprobe]`` with recall@k >= ``target`` on the queries (or a fixed sample
    of ``max_queries`` of them), using ``peer.search`` (batch calls): doubling from ``start`` until the
    target is reached, then bisection (IVF with exact distances is monotone in nprobe on a fixed query
    set). Cheap probes are evaluated first, so a full scan happens only if the target needs it. Returns
    ``(nprobe, recall)``, or ``(None, recall at max_nprobe)`` if the target is not reached. ``curve``, if
    given, receives every evaluated ``{nprobe: recall}``."""
    queries = np.atleast_2d(queries)
    sel = _sample(len(queries), max_queries, seed)
    q, t = queries[sel], np.asarray(true_ids)[sel]
    cap = int(max_nprobe or getattr(peer, "nlist", None) or 1024)
    seen = curve if curve is not None else {}

    def rec(n):
        if n not in seen:
            seen[n] = _recall_of(peer, q, t, k, n)
        return seen[n]
    lo, hi = 0, max(1, min(int(start), cap))   # invariant: rec(lo) < target (lo=0: nothing probed)
    while rec(hi) < target:
        if hi >= cap:
            return None, seen[hi]
        lo, hi = hi, min(cap, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rec(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi, seen[hi]


def at_equal_recall(peer: Peer, queries, true_ids, target: float, k: int = 10, *,
                    max_nprobe: int | None = None, search_queries: int | None = None, **run_kw) -> dict:
    """Find the smallest nprobe reaching ``target`` (``nprobe_for_recall``, on ``search_queries`` sampled
    queries, all by default) and measure the peer there; label ``"<name>@recall"``. The result carries
    ``target_recall`` and ``target_reached``; when the target is not reached it is measured at
    ``max_nprobe``."""
    curve: dict = {}
    n, _ = nprobe_for_recall(peer, queries, true_ids, target, k, max_nprobe=max_nprobe,
                             max_queries=search_queries, curve=curve)
    reached = n is not None
    if n is None:
        n = int(max_nprobe or getattr(peer, "nlist", None) or 1024)
    res = run_peer(peer, queries, true_ids, k, n, label=f"{peer.name}@recall", **run_kw)
    res.update({"target_recall": target, "target_reached": reached,
                "nprobe_curve": {int(a): float(b) for a, b in sorted(curve.items())}})
    return res


__all__ = ["BruteForcePeer", "CallablePeer", "FaissIvfFlatPeer", "LanceIvfFlatPeer", "Peer",
           "at_equal_recall", "nprobe_for_recall", "run_peer", "sweep_nprobe", "table_to_ids"]
