"""Benchmark datasets: real sets from ``../shared/data``, a streamable synthetic set, exact ground truth.

Public API (all arrays are numpy; vectors are float32, ids int64):

- ``load_sift10k(data_dir)`` / ``load_bigann10k(data_dir)`` -> ``(base (10000,128), queries (100,128),
  groundtruth int64 (100,100))``. Raise ``DatasetNotFound`` (a ``FileNotFoundError``) naming the missing file.
- ``load_wordnet(data_dir, n=None)`` -> float32 ``(n, 384)`` (stored as float16, L2-normalised; cosine).
- ``generate_clustered(n, dim=128, n_queries=1000, seed=0, ...)`` -> ``(base, queries)`` in memory;
  ``iter_clustered(n, chunk_rows, ...)`` yields the same base rows as float32 chunks (streaming; the rows do
  not depend on ``chunk_rows``); ``clustered_queries(n_queries, ...)`` -> the queries alone.
- ``exact_knn(base_or_chunks, queries, k, metric="l2")`` -> ``(ids int64 (m,k), distances float64 (m,k))``,
  BLAS in blocks; ids are row positions (or the ids given with ``(ids, vectors)`` chunks). Distances follow
  the lakevec conventions: squared L2, ``1 - cosine similarity``, negative inner product.
- ``write_parquet(path, chunks, ...)`` -> list of files with columns ``id`` int64 and ``vector``
  ``fixed_size_list<float32>[dim]``.
- ``clustered_dataset(...)`` / ``sift10k_dataset(...)`` / ``bigann10k_dataset(...)`` -> ``BenchDataset``,
  cached under ``cache_dir`` (default ``$LAKEVEC_BENCH_CACHE`` or ``~/.cache/lakevec/bench``), keyed by a hash
  of the generation parameters: ``base.npy`` (opened memory-mapped), ``queries.npy``, ground truth per
  ``(metric, k)`` and Parquet files. A second run with the same parameters only reads them.

The synthetic set ("clustered"): a Gaussian mixture of ``n_clusters`` components (Dirichlet weights, per
component scale) in ``latent_dim`` dimensions, mapped to ``dim`` by a random linear map plus a mild
``tanh`` nonlinearity, plus isotropic noise. Queries come from the same distribution (they are not base
rows). Default parameters are calibrated so that an IVF with ``nlist ~ sqrt(n)`` needs ``nprobe`` of about
16-24 for recall@10 = 0.95 at n = 100k..1M (faiss IndexIVFFlat). Determinism: the model parameters come from
``SeedSequence([seed, 0])``, base block ``b`` (``BLOCK_ROWS`` rows) from ``SeedSequence([seed, 1, b])``, the
queries from ``SeedSequence([seed, 2])``; so any chunking of the stream gives identical rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

BLOCK_ROWS = 65536  # generation block; the stream's content does not depend on the caller's chunk size
GENERATOR_VERSION = 1  # bump when the generator changes, so caches are not reused


class DatasetNotFound(FileNotFoundError):
    """A benchmark data file is absent (message names the file and where it was looked for)."""


# ----------------------------------------------------------------------------------------------
# real data in ../shared/data
# ----------------------------------------------------------------------------------------------

def default_data_dir() -> Path:
    """``$LAKEVEC_BENCH_DATA``, else ``<project root>/../shared/data``."""
    env = os.environ.get("LAKEVEC_BENCH_DATA")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]  # lakevec/bench/datasets.py -> project root
    return root.parent / "shared" / "data"


def _need(data_dir, name: str) -> Path:
    p = Path(data_dir if data_dir is not None else default_data_dir()) / name
    if not p.is_file():
        raise DatasetNotFound(f"benchmark data file {name!r} not found at {p} "
                              f"(expected the shared data directory, see ../shared/data/README.md)")
    return p


VECS_KINDS = {"fvecs": (np.float32, 4), "ivecs": (np.int32, 4), "bvecs": (np.uint8, 1)}


def read_vecs(source, kind: str | None = None, name: str | None = None) -> np.ndarray:
    """Read a texmex ``.fvecs`` / ``.ivecs`` / ``.bvecs`` file: per row an int32 dimension, then that many
    float32 / int32 / uint8 values. The one reader of these files in lakevec (benchmarks, quickstart, the
    CLI's query files, the tests).

    ``source``: a path, or the file's bytes (``name`` then says what it is in messages). ``kind``: default
    from the file name's suffix. Returns (rows, dim): float32 for fvecs and bvecs (bytes widened), int32 for
    ivecs. Raises ``InvalidArgumentError`` (a ``ValueError``) for an empty, truncated or ragged file.
    """
    from ..errors import InvalidArgumentError

    label = str(name if name is not None else (source if not isinstance(source, (bytes, bytearray, memoryview))
                                               else "vecs data"))
    if kind is None:
        kind = label.rsplit(".", 1)[-1].lower()
    if kind not in VECS_KINDS:
        raise InvalidArgumentError(f"{label}: unknown vecs kind {kind!r}; expected one of {sorted(VECS_KINDS)}")
    dtype, width = VECS_KINDS[kind]
    raw = (np.frombuffer(source, dtype=np.uint8) if isinstance(source, (bytes, bytearray, memoryview))
           else np.fromfile(source, dtype=np.uint8))
    if raw.size < 4:
        raise InvalidArgumentError(f"{label}: empty or truncated {kind} file")
    dim = int(raw[:4].view(np.int32)[0])
    row_bytes = 4 + dim * width
    if dim <= 0 or raw.size % row_bytes:
        raise InvalidArgumentError(f"{label}: not a {kind} file (first dimension {dim}, {raw.size} bytes)")
    rows = raw.reshape(-1, row_bytes)
    if not (rows[:, :4].copy().view(np.int32)[:, 0] == dim).all():
        raise InvalidArgumentError(f"{label}: rows of a {kind} file have different dimensions")
    body = np.ascontiguousarray(rows[:, 4:])
    return body.astype(np.float32) if kind == "bvecs" else body.view(dtype).copy()


def read_fvecs(path, dtype=np.float32) -> np.ndarray:
    """``read_vecs(path, "fvecs")`` (``dtype=np.int32``: ``"ivecs"``)."""
    return read_vecs(path, "ivecs" if np.dtype(dtype) == np.int32 else "fvecs")


def read_ivecs(path) -> np.ndarray:
    return read_vecs(path, "ivecs")


def read_bvecs(path) -> np.ndarray:
    return read_vecs(path, "bvecs")


def load_sift10k(data_dir=None):
    """SIFT10K: ``(base float32 (10000,128), queries float32 (100,128), groundtruth int64 (100,100))``."""
    b, q, g = (_need(data_dir, f) for f in
               ("siftsmall_base.fvecs", "siftsmall_query.fvecs", "siftsmall_groundtruth.ivecs"))
    return read_fvecs(b), read_fvecs(q), read_ivecs(g).astype(np.int64)


def load_bigann10k(data_dir=None):
    """BIGANN 10k subset (uint8 -> float32): ``(base (10000,128), queries (100,128), groundtruth (100,100))``."""
    b, q, g = (_need(data_dir, f) for f in
               ("bigann10k_base.bvecs", "bigann10k_query.bvecs", "bigann10k_groundtruth.ivecs"))
    return read_bvecs(b), read_bvecs(q), read_ivecs(g).astype(np.int64)


def load_wordnet(data_dir=None, n: int | None = None) -> np.ndarray:
    """WordNet gloss embeddings (all-MiniLM-L6-v2, L2-normalised): float32 ``(n or 117659, 384)``."""
    p = _need(data_dir, "wordnet_minilm384.npy")
    a = np.load(p, mmap_mode="r")
    if n is not None:
        a = a[:n]
    return np.asarray(a, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# synthetic clustered set
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusteredParams:
    """Parameters of the latent-mixture generator (defaults are the calibrated ones)."""
    dim: int = 128
    seed: int = 0
    latent_dim: int = 16
    n_clusters: int = 256
    center_scale: float = 1.0      # spread of the component means in latent space
    cluster_scale: float = 1.0     # median component std (relative to center_scale: overlap)
    scale_jitter: float = 0.3      # log-normal jitter of per-component std
    nonlinearity: float = 0.3      # weight of the tanh term in the latent -> dim map
    noise: float = 0.3             # isotropic noise std in the output space
    weight_concentration: float = 2.0  # Dirichlet concentration of the mixture weights

    def key(self) -> dict:
        d = dict(self.__dict__)
        d["generator_version"] = GENERATOR_VERSION
        return d


class _Model:
    def __init__(self, p: ClusteredParams):
        rng = np.random.default_rng(np.random.SeedSequence([p.seed, 0]))
        L, C = p.latent_dim, p.n_clusters
        self.p = p
        self.centers = rng.standard_normal((C, L)) * p.center_scale
        self.weights = rng.dirichlet(np.full(C, p.weight_concentration))
        self.scales = p.cluster_scale * np.exp(rng.normal(0.0, p.scale_jitter, C))
        self.W = rng.standard_normal((L, p.dim)) / np.sqrt(L)
        self.W2 = rng.standard_normal((L, p.dim)) / np.sqrt(L)

    def draw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        p = self.p
        c = rng.choice(p.n_clusters, size=m, p=self.weights)
        z = self.centers[c] + self.scales[c, None] * rng.standard_normal((m, p.latent_dim))
        x = z @ self.W
        if p.nonlinearity:
            x += p.nonlinearity * np.tanh(z @ self.W2)
        if p.noise:
            x += p.noise * rng.standard_normal((m, p.dim))
        return x.astype(np.float32)


def _params(dim, seed, kw) -> ClusteredParams:
    return ClusteredParams(dim=dim, seed=seed, **kw)


def iter_clustered(n: int, chunk_rows: int = BLOCK_ROWS, dim: int = 128, seed: int = 0,
                   **params) -> Iterator[np.ndarray]:
    """Yield the ``n`` base rows as float32 arrays of ``chunk_rows`` rows (last one shorter).

    Only one generation block plus one output chunk is in memory at a time. ``params`` are the other
    ``ClusteredParams`` fields (latent_dim, n_clusters, cluster_scale, noise, ...)."""
    if n < 0 or chunk_rows <= 0:
        raise ValueError(f"need n >= 0 and chunk_rows > 0, got n={n}, chunk_rows={chunk_rows}")
    model = _Model(_params(dim, seed, params))
    pending: list[np.ndarray] = []
    pending_rows = 0
    for b in range((n + BLOCK_ROWS - 1) // BLOCK_ROWS):
        rows = min(BLOCK_ROWS, n - b * BLOCK_ROWS)
        block = model.draw(rows, np.random.default_rng(np.random.SeedSequence([seed, 1, b])))
        pending.append(block)
        pending_rows += rows
        while pending_rows >= chunk_rows:
            buf = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield buf[:chunk_rows]
            rest = buf[chunk_rows:]
            pending, pending_rows = ([rest] if len(rest) else []), len(rest)
    if pending_rows:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def clustered_queries(n_queries: int, dim: int = 128, seed: int = 0, **params) -> np.ndarray:
    """Queries from the same distribution as the base rows (independent draws, not base rows)."""
    model = _Model(_params(dim, seed, params))
    return model.draw(n_queries, np.random.default_rng(np.random.SeedSequence([seed, 2])))


def generate_clustered(n: int, dim: int = 128, n_queries: int = 1000, seed: int = 0,
                       **params) -> tuple[np.ndarray, np.ndarray]:
    """``(base float32 (n, dim), queries float32 (n_queries, dim))`` in memory (small n / tests)."""
    out = np.empty((n, dim), dtype=np.float32)
    pos = 0
    for c in iter_clustered(n, BLOCK_ROWS, dim=dim, seed=seed, **params):
        out[pos:pos + len(c)] = c
        pos += len(c)
    return out, clustered_queries(n_queries, dim=dim, seed=seed, **params)


# ----------------------------------------------------------------------------------------------
# exact kNN (ground truth)
# ----------------------------------------------------------------------------------------------

METRICS = ("l2", "cosine", "dot")


def _normalize(x: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    nrm[nrm == 0] = 1.0
    return x / nrm


def _as_id_chunks(base_or_chunks, sub_rows: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Normalise the input to (ids int64, vectors float32) pieces of at most ``sub_rows`` rows.

    Plain arrays get ids ``start + running row position``; ``(ids, vectors)`` tuples keep their ids."""
    if isinstance(base_or_chunks, np.ndarray):
        source: Iterable = (base_or_chunks,)
    else:
        source = base_or_chunks
    offset = start
    for item in source:
        if isinstance(item, tuple):
            ids, vec = np.asarray(item[0], dtype=np.int64), item[1]
        else:
            vec, ids = item, None
        vec = np.asarray(vec)
        if vec.ndim != 2:
            raise ValueError(f"base chunk must be 2-D, got shape {vec.shape}")
        if ids is None:
            ids = np.arange(offset, offset + len(vec), dtype=np.int64)
        offset += len(vec)
        for s in range(0, len(vec), sub_rows):
            yield ids[s:s + sub_rows], np.ascontiguousarray(vec[s:s + sub_rows], dtype=np.float32)


def exact_knn(base_or_chunks, queries: np.ndarray, k: int, metric: str = "l2", *,
              query_block: int = 512, base_block: int = 32768, pad: int = 16
              ) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every query.

    ``base_or_chunks``: a 2-D array, or an iterable of 2-D arrays (ids = running row position) or of
    ``(ids, vectors)`` tuples. It is read once. Candidates are selected with float32 BLAS, then their
    distances are recomputed in float64, so ties/rounding do not reorder the result. Ties are broken by id.
    Returns ``(ids int64 (m, k), distances float64 (m, k))``; rows with fewer than k base rows are padded
    with id -1 and distance +inf."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if metric == "cosine":
        q = _normalize(q.astype(np.float64)).astype(np.float32)
    q64 = q.astype(np.float64)
    m = len(q)
    best_d = np.full((m, k), np.inf)
    best_i = np.full((m, k), -1, dtype=np.int64)
    kc = k + pad
    for ids, x in _as_id_chunks(base_or_chunks, base_block):
        if x.shape[1] != q.shape[1]:
            raise ValueError(f"dimension mismatch: base {x.shape[1]} vs queries {q.shape[1]}")
        if metric == "cosine":
            x = _normalize(x.astype(np.float64)).astype(np.float32)
        xn = (x.astype(np.float64) ** 2).sum(1).astype(np.float32) if metric == "l2" else None
        nb = len(x)
        for qs in range(0, m, query_block):
            qb = q[qs:qs + query_block]
            d = qb @ x.T                              # (bq, nb) float32
            if metric == "l2":
                d *= -2.0
                d += xn[None, :]                      # ||x||^2 - 2 q.x  (||q||^2 is constant per row)
            else:
                np.negative(d, out=d)
            if nb > kc:
                cand = np.argpartition(d, kc - 1, axis=1)[:, :kc]
            else:
                cand = np.broadcast_to(np.arange(nb), (len(qb), nb))
            del d
            # exact float64 distances of the candidates
            xc = x[cand].astype(np.float64)           # (bq, kc, dim)
            qd = q64[qs:qs + query_block][:, None, :]
            if metric == "l2":
                dc = ((xc - qd) ** 2).sum(-1)
            elif metric == "cosine":
                dc = 1.0 - (xc * qd).sum(-1)
            else:
                dc = -(xc * qd).sum(-1)
            all_d = np.concatenate([best_d[qs:qs + query_block], dc], axis=1)
            all_i = np.concatenate([best_i[qs:qs + query_block], ids[cand]], axis=1)
            # sort by (distance, id); padding (-1, inf) sorts last
            order = np.lexsort((np.where(all_i < 0, np.iinfo(np.int64).max, all_i), all_d), axis=1)[:, :k]
            best_d[qs:qs + query_block] = np.take_along_axis(all_d, order, 1)
            best_i[qs:qs + query_block] = np.take_along_axis(all_i, order, 1)
    return best_i, best_d


# ----------------------------------------------------------------------------------------------
# Parquet
# ----------------------------------------------------------------------------------------------

def vectors_to_arrow(ids: np.ndarray, vectors: np.ndarray):
    """A pyarrow Table with ``id`` int64 and ``vector`` fixed_size_list<float32>[dim]."""
    import pyarrow as pa
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
    return pa.table({"id": pa.array(np.asarray(ids, dtype=np.int64)), "vector": vec})


def arrow_schema(dim: int):
    import pyarrow as pa
    return pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), dim))])


def write_parquet(path, chunks, *, start_id: int = 0, rows_per_file: int | None = None,
                  row_group_rows: int = 65536, compression: str = "none") -> list[str]:
    """Write vectors to Parquet (``id`` int64 + ``vector`` fixed_size_list<float32>).

    ``chunks``: a 2-D array or an iterable of arrays (ids = ``start_id`` + running position) or of
    ``(ids, vectors)`` tuples. If ``path`` ends with ``.parquet`` one file is written (``rows_per_file``
    must be None); otherwise ``path`` is a directory that receives ``part-00000.parquet``, ... with at
    most ``rows_per_file`` rows each. Returns the file paths written."""
    import pyarrow.parquet as pq
    path = Path(path)
    single = path.suffix == ".parquet"
    if single and rows_per_file is not None:
        raise ValueError("rows_per_file needs a directory path, not a .parquet file")
    if not single:
        path.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    writer = None
    in_file = 0

    def open_writer(dim):
        nonlocal writer, in_file
        p = path if single else path / f"part-{len(files):05d}.parquet"
        files.append(str(p))
        writer = pq.ParquetWriter(str(p), arrow_schema(dim), compression=compression)
        in_file = 0

    try:
        for ids, x in _as_id_chunks(chunks, row_group_rows, start=start_id):
            s = 0
            while s < len(x):
                if writer is None:
                    open_writer(x.shape[1])
                take = len(x) - s if rows_per_file is None else min(len(x) - s, rows_per_file - in_file)
                writer.write_table(vectors_to_arrow(ids[s:s + take], x[s:s + take]))
                in_file += take
                s += take
                if rows_per_file is not None and in_file >= rows_per_file:
                    writer.close()
                    writer = None
    finally:
        if writer is not None:
            writer.close()
    return files


def read_parquet_vectors(paths) -> tuple[np.ndarray, np.ndarray]:
    """Read back ``(ids, vectors)`` from files written by ``write_parquet``."""
    import pyarrow.parquet as pq
    if isinstance(paths, (str, Path)):
        paths = [paths]
    ids, vecs = [], []
    for p in paths:
        t = pq.read_table(str(p), columns=["id", "vector"])
        ids.append(t.column("id").to_numpy())
        col = t.column("vector").combine_chunks()
        dim = col.type.list_size
        vecs.append(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim))
    return np.concatenate(ids), np.concatenate(vecs).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# cached datasets
# ----------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("LAKEVEC_BENCH_CACHE") or Path.home() / ".cache" / "lakevec" / "bench")


@dataclass
class BenchDataset:
    """A benchmark set: base rows (memory-mapped), queries, exact ground truth, Parquet copies."""
    name: str
    metric: str
    base: np.ndarray                 # (n, dim) float32, usually a read-only memmap
    queries: np.ndarray              # (m, dim) float32
    gt_ids: np.ndarray               # (m, k_gt) int64: ids == row positions
    gt_distances: np.ndarray | None
    parquet_files: list[str] = field(default_factory=list)
    directory: Path | None = None
    params: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.base)

    @property
    def dim(self) -> int:
        return self.base.shape[1]

    def iter_chunks(self, chunk_rows: int = BLOCK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` chunks read from the memory map (one chunk in memory at a time)."""
        for s in range(0, self.n, chunk_rows):
            yield (np.arange(s, min(s + chunk_rows, self.n), dtype=np.int64),
                   np.array(self.base[s:s + chunk_rows], dtype=np.float32))

    def info(self) -> dict:
        return {"name": self.name, "n": self.n, "dim": self.dim, "metric": self.metric,
                "n_queries": len(self.queries), "gt_k": int(self.gt_ids.shape[1]),
                "parquet_files": len(self.parquet_files),
                "directory": str(self.directory) if self.directory else None, "params": self.params}


def _key_dir(cache_dir, name: str, key: dict) -> Path:
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir or default_cache_dir()) / f"{name}-{h}"


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _ensure_gt(d: Path, base_source, queries, k: int, metric: str, progress=None):
    fi, fd = d / f"gt_{metric}_k{k}_ids.npy", d / f"gt_{metric}_k{k}_dist.npy"
    if not (fi.exists() and fd.exists()):
        if progress:
            progress(f"computing exact {metric} top-{k} for {len(queries)} queries")
        ids, dist = exact_knn(base_source(), queries, k, metric)
        _atomic_save(fd, dist)
        _atomic_save(fi, ids)
    return np.load(fi), np.load(fd)


def _ensure_parquet(d: Path, base_source, rows_per_file, progress=None) -> list[str]:
    pdir = d / f"parquet-{rows_per_file or 'all'}"
    done = pdir / "_SUCCESS"
    if not done.exists():
        if pdir.exists():  # an interrupted earlier write
            shutil.rmtree(pdir, ignore_errors=True)
        tmp = d / f"{pdir.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            progress(f"writing Parquet under {pdir}")
        files = write_parquet(tmp, base_source(), rows_per_file=rows_per_file)
        (tmp / "_SUCCESS").write_text(json.dumps([os.path.basename(f) for f in files]))
        try:
            os.rename(tmp, pdir)     # atomic; loses (harmlessly) to a concurrent writer that finished first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return [str(pdir / f) for f in json.loads(done.read_text())]


def clustered_dataset(n: int, n_queries: int = 1000, *, dim: int = 128, seed: int = 0,
                      metric: str = "l2", gt_k: int = 100, parquet: bool = True,
                      rows_per_file: int | None = 262144, cache_dir=None, progress=None,
                      **params) -> BenchDataset:
    """The synthetic clustered set, generated once (streaming) and cached with ground truth + Parquet.

    ``progress``: optional callable taking a message string (e.g. ``print``)."""
    p = _params(dim, seed, params)
    key = {"kind": "clustered", "n": n, "n_queries": n_queries, **p.key()}
    d = _key_dir(cache_dir, f"clustered-{n}", key)
    d.mkdir(parents=True, exist_ok=True)
    bpath, qpath = d / "base.npy", d / "queries.npy"
    if not bpath.exists():
        if progress:
            progress(f"generating {n} x {dim} clustered vectors into {bpath}")
        tmp = d / f"base.tmp-{os.getpid()}.npy"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        pos = 0
        for c in iter_clustered(n, BLOCK_ROWS, dim=dim, seed=seed, **params):
            mm[pos:pos + len(c)] = c
            pos += len(c)
        mm.flush()
        del mm
        os.replace(tmp, bpath)
    if not qpath.exists():
        _atomic_save(qpath, clustered_queries(n_queries, dim=dim, seed=seed, **params))
    (d / "params.json").write_text(json.dumps(key, indent=1, sort_keys=True))
    base = np.load(bpath, mmap_mode="r")
    queries = np.load(qpath)
    ds = BenchDataset(f"clustered-{n}", metric, base, queries, None, None, directory=d, params=key)
    ds.gt_ids, ds.gt_distances = _ensure_gt(d, ds.iter_chunks, queries, gt_k, metric, progress)
    if parquet:
        ds.parquet_files = _ensure_parquet(d, ds.iter_chunks, rows_per_file, progress)
    return ds


def _real_dataset(name, loader, data_dir, cache_dir, parquet, progress) -> BenchDataset:
    base, queries, gt = loader(data_dir)
    key = {"kind": name, "n": len(base), "source": str(Path(data_dir or default_data_dir()).resolve())}
    d = _key_dir(cache_dir, name, key)
    d.mkdir(parents=True, exist_ok=True)
    ds = BenchDataset(name, "l2", base, queries, gt, None, directory=d, params=key)
    if parquet:
        ds.parquet_files = _ensure_parquet(d, ds.iter_chunks, None, progress)
    return ds


def sift10k_dataset(data_dir=None, *, cache_dir=None, parquet: bool = True, progress=None) -> BenchDataset:
    """SIFT10K with its public ground truth (top-100, L2) and a cached Parquet copy."""
    return _real_dataset("sift10k", load_sift10k, data_dir, cache_dir, parquet, progress)


def bigann10k_dataset(data_dir=None, *, cache_dir=None, parquet: bool = True, progress=None) -> BenchDataset:
    """BIGANN10K (uint8 as float32) with its ground truth (top-100, L2) and a cached Parquet copy."""
    return _real_dataset("bigann10k", load_bigann10k, data_dir, cache_dir, parquet, progress)


def load_dataset(spec: str, *, data_dir=None, cache_dir=None, n_queries: int | None = None,
                 progress=None, **kw) -> BenchDataset:
    """By name: ``"sift10k"``, ``"bigann10k"`` (100 queries each), ``"clustered-1m"`` /
    ``"clustered-100k"`` / ``"clustered-<rows>"`` (suffix k/m allowed; ``n_queries`` default 10,000; the
    first m queries of a larger query set are the same vectors, but ground truth is cached per set)."""
    s = spec.lower()
    if s == "sift10k":
        return sift10k_dataset(data_dir, cache_dir=cache_dir, progress=progress)
    if s == "bigann10k":
        return bigann10k_dataset(data_dir, cache_dir=cache_dir, progress=progress)
    if s.startswith("clustered-"):
        num = s.split("-", 1)[1]
        mult = {"k": 1000, "m": 1000000}.get(num[-1:], 1)
        n = int(float(num[:-1] if mult > 1 else num) * mult)
        return clustered_dataset(n, n_queries or 10000, cache_dir=cache_dir, progress=progress, **kw)
    raise ValueError(f"unknown dataset {spec!r}: use sift10k, bigann10k or clustered-<rows> (e.g. clustered-1m)")


__all__ = [
    "BLOCK_ROWS", "BenchDataset", "ClusteredParams", "DatasetNotFound", "METRICS", "arrow_schema",
    "bigann10k_dataset", "clustered_dataset", "clustered_queries", "default_cache_dir", "default_data_dir",
    "exact_knn", "generate_clustered", "iter_clustered", "load_bigann10k", "load_dataset", "load_sift10k",
    "load_wordnet", "read_bvecs", "read_fvecs", "read_ivecs", "read_vecs", "read_parquet_vectors", "sift10k_dataset",
    "vectors_to_arrow", "write_parquet",
]
