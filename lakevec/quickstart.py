"""``lakevec quickstart``: the whole life of a table in under a minute, on a real S3 server.

1. start an embedded SeaweedFS S3 server on 127.0.0.1 (``lakevec.store.seaweed.EmbeddedS3``), unless a
   lake URI is given;
2. load a real data set: SIFT10K from the shared data folder (``$LAKEVEC_DATA``, else ``../shared/data``
   relative to the repository, else relative to the current directory); without it, a clustered
   synthetic set is generated with numpy;
3. write it as Parquet files to the object store (a "landing" prefix, as an upstream ETL job would);
4. create a lake and a table, ingest three of the four Parquet files in one commit, re-run that ingestion
   (it commits nothing: idempotency), build the IVF index, append the last file (new rows go to their
   nearest partitions);
5. batch-search the data set's queries and measure recall@10 against exact ground truth (the data set's
   file, or brute force); show time travel (the row count at the version before the index) and a
   pre-filtered search;
6. print a summary and stop the server (always, also on error or Ctrl-C).

``run_quickstart(...)`` returns the summary dict; ``lakevec.cli.quickstart_cmd`` prints it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIFT_FILES = ("siftsmall_base.fvecs", "siftsmall_query.fvecs", "siftsmall_groundtruth.ivecs")
DATA_ENV = ("LAKEVEC_DATA", "LAKEVEC_DATA_DIR")
TABLE = "quickstart"
PARQUET_FILES = 4
GROUPS = 8  # metadata column "group" = id % GROUPS, for the filtered search
FILTER = "group = 3"
K = 10
MIN_RECALL = 0.9  # a check: the default nprobe is calibrated for ~0.97 on held-out rows


@dataclass
class DemoData:
    """Vectors to ingest, queries, and (when known) exact top-k ids of each query."""

    name: str
    base: np.ndarray  # (n, d) float32; row i has id i
    queries: np.ndarray  # (m, d) float32
    groundtruth: np.ndarray | None  # (m, >= K) int ids, exact L2 neighbours
    source: str


# -- data ------------------------------------------------------------------------------------------

def repo_root() -> Path:
    """The folder holding the ``lakevec`` package (the repository root for a source checkout)."""
    return Path(__file__).resolve().parent.parent


def find_data_dir() -> Path | None:
    """Return the first folder holding SIFT10K: $LAKEVEC_DATA, ../shared/data of the repo, then of the cwd."""
    candidates = [Path(os.environ[e]).expanduser() for e in DATA_ENV if os.environ.get(e)]
    candidates += [repo_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                   Path.cwd() / "shared" / "data"]
    for c in candidates:
        if all((c / f).is_file() for f in SIFT_FILES):
            return c.resolve()
    return None


def clustered(n: int, dim: int = 128, n_queries: int = 100, clusters: int = 64, seed: int = 0):
    """Return (base (n, dim), queries) drawn from a Gaussian mixture: clustered like real embeddings."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (clusters, dim)).astype(np.float32) * 4
    scales = rng.uniform(0.5, 1.5, clusters).astype(np.float32)

    def draw(m):
        c = rng.integers(0, clusters, m)
        return (centers[c] + rng.normal(0, 1, (m, dim)).astype(np.float32) * scales[c, None]).astype(np.float32)

    return draw(n), draw(n_queries)


def load_data(rows: int | None = None, data_dir=None, synthetic: bool = False) -> DemoData:
    """Return the demo data: SIFT10K (its first ``rows`` rows) if found, else ``rows`` synthetic vectors."""
    from .bench.datasets import read_vecs

    d = None if synthetic else (Path(data_dir) if data_dir else find_data_dir())
    if d is not None and all((d / f).is_file() for f in SIFT_FILES):
        base = read_vecs(d / SIFT_FILES[0])
        if rows is None or rows <= len(base):
            queries = read_vecs(d / SIFT_FILES[1])
            gt = read_vecs(d / SIFT_FILES[2])
            if rows is not None and rows < len(base):
                base, gt = base[:rows], None  # the file's ground truth is for all 10,000 rows
            return DemoData("SIFT10K" if gt is not None else f"SIFT10K (first {rows:,} rows)", base, queries, gt,
                            str(d / SIFT_FILES[0]))
    n = rows or 10_000
    base, queries = clustered(n)
    why = "forced by --synthetic" if synthetic else "SIFT10K not found" if d is None else \
        f"more rows than SIFT10K's {10_000:,}" if rows and rows > 10_000 else f"SIFT10K incomplete in {d}"
    return DemoData("clustered (synthetic)", base, queries, None, f"numpy Gaussian mixture ({why})")


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Return the ids (row numbers) of the exact squared-L2 top-k of every query, by brute force (BLAS)."""
    m = len(queries)
    best_d = np.full((m, 0), np.inf, dtype=np.float32)
    best_i = np.zeros((m, 0), dtype=np.int64)
    q = queries.astype(np.float32)
    for start in range(0, len(base), chunk):
        x = base[start:start + chunk].astype(np.float32)
        d = (x * x).sum(1)[None, :] - 2 * q @ x.T  # + |q|^2, the same for every row of a query
        kk = min(k, d.shape[1])
        part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        cat_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], 1)
        cat_i = np.concatenate([best_i, part + start], 1)
        order = np.argsort(cat_d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(cat_d, order, 1), np.take_along_axis(cat_i, order, 1)
    return best_i


def recall_at_k(result, truth: np.ndarray, m: int, k: int = K) -> float:
    """Return mean |found top-k ∩ true top-k| / k over the ``m`` queries of a search result table."""
    qi = result.column("query_index").to_numpy()
    ids = np.asarray(result.column("id").to_numpy(), dtype=np.int64)
    hits = 0
    for i in range(m):
        found = set(ids[qi == i][:k].tolist())
        hits += len(found & set(np.asarray(truth[i, :k]).tolist()))
    return hits / (m * k)


# -- steps -----------------------------------------------------------------------------------------

def _parquet_bytes(ids: np.ndarray, vectors: np.ndarray, shard: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    t = pa.table({
        "id": pa.array(ids, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors).ravel()), dim),
        "group": pa.array((ids % GROUPS).astype(np.int32)),
        "shard": pa.array([shard] * len(ids)),
    })
    buf = pa.BufferOutputStream()
    pq.write_table(t, buf, row_group_size=4096)
    return buf.getvalue().to_pybytes()


def _default_step(label: str):
    from .cli.common import Progress
    return Progress(label, "lines")


def run_quickstart(lake: str | None = None, storage_options: dict | None = None, rows: int | None = None,
                   keep: bool = False, table: str = TABLE, data_dir=None, synthetic: bool = False,
                   step=None, cache_dir: str | None = None, cache_bytes: int | None = None) -> dict:
    """Run the quickstart (see the module doc) and return its summary.

    ``lake``: use this lake URI instead of an embedded S3 server. ``keep``: leave the data behind (the
    embedded server's folder, or the table and Parquet input in the given lake); otherwise everything
    the quickstart created is removed. ``step(label)`` returns a context manager reporting one step
    (default: a line on stderr when it ends).
    """
    step = step or _default_step
    from .cli.common import fmt_bytes, search_stats
    from .lake import Lake

    out: dict = {"ok": False, "table": table, "timings": {}}
    timings = out["timings"]
    t_all = time.time()
    n_steps = 10 if lake is None else 8
    counter = iter(range(1, n_steps + 1))

    @contextlib.contextmanager
    def timed(key: str, label: str):
        t0 = time.time()
        with step(f"[{next(counter)}/{n_steps}] {label}") as s:
            yield s
        timings[key] = round(time.time() - t0, 3)

    with contextlib.ExitStack() as stack:
        if lake is None:
            from .store.seaweed import EmbeddedS3
            workdir = tempfile.mkdtemp(prefix="lakevec-quickstart-") if keep else None
            srv = EmbeddedS3(workdir=workdir, buckets=("lakevec",))
            with timed("start_s3", "starting an embedded S3 server (SeaweedFS) on 127.0.0.1") as s:
                stack.enter_context(srv)  # stopped when the block exits, whatever happens
                s.update(srv.endpoint)
            lake_uri = srv.uri("lakevec", "lake")
            input_uri = srv.uri("lakevec", "landing/quickstart")
            opts = dict(srv.storage_options)
            out["server"] = {"endpoint": srv.endpoint, "workdir": workdir if keep else None,
                             "env": srv.env if keep else None}
        else:
            lake_uri, opts, srv = lake, storage_options, None
            input_uri = None

        with timed("load_data", "loading the data set") as s:
            data = load_data(rows, data_dir, synthetic)
            s.update(f"{data.name}: {len(data.base):,} x {data.base.shape[1]}, {len(data.queries)} queries")
        n, dim = data.base.shape
        out.update({"dataset": data.name, "data_source": data.source, "rows": int(n), "dim": int(dim),
                    "metric": "l2", "queries": int(len(data.queries))})

        lk = Lake(lake_uri, storage_options=opts, cache_dir=cache_dir, cache_bytes=cache_bytes, create=True)
        out["lake"] = lk.uri
        if input_uri is None:
            input_uri = lk.loc.join("_quickstart_input")

        with timed("write_parquet", f"writing {PARQUET_FILES} Parquet files to {input_uri}/") as s:
            bounds = np.linspace(0, n, PARQUET_FILES + 1).astype(int)
            files, nbytes = [], 0
            for i in range(PARQUET_FILES):
                uri = f"{input_uri}/part-{i:04d}.parquet"
                body = _parquet_bytes(np.arange(bounds[i], bounds[i + 1]), data.base[bounds[i]:bounds[i + 1]],
                                      f"part-{i:04d}")
                lk.store.write_bytes(uri, body)
                files.append(uri)
                nbytes += len(body)
            s.update(fmt_bytes(nbytes))
        out["parquet"] = {"uri": input_uri, "files": len(files), "bytes": nbytes}

        try:
            if table in lk.table_names():
                lk.drop_table(table)  # left by an earlier quickstart run with --keep
                out["replaced_existing_table"] = True
            t = lk.create_table(table, dim=int(dim), metric="l2")
            first, last = files[:-1], files[-1:]
            with timed("ingest", f"ingesting {len(first)} Parquet files into table {table!r}") as s:
                r1 = t.add(first)
                s.update(f"{r1.rows_added:,} rows -> version {r1.version}")
            again = t.add(first)  # the same files again: recognised by their key, nothing committed
            out["ingest"] = {"rows_added": r1.rows_added, "rows_rejected": r1.rows_rejected, "version": r1.version,
                             "key": r1.key, "seconds": round(r1.seconds, 3)}
            out["idempotent_rerun"] = {"skipped": bool(again.skipped), "rows_added": again.rows_added,
                                       "version": again.version}

            with timed("build_index", "building the IVF index") as s:
                from .progress import Progress
                if isinstance(s, Progress):  # the build's phases show inside the step
                    from .cli.common import call_with_progress
                    meta = call_with_progress(t.build_index, s)
                else:
                    meta = t.build_index()
                s.update(f"{meta.num_partitions} partitions, default nprobe {meta.default_nprobe}")
            curve = {int(p): float(x) for p, x in meta.recall_curve or []}
            sizes = list(meta.partition_sizes or [])
            out["index"] = {"num_partitions": meta.num_partitions, "default_nprobe": meta.default_nprobe,
                            "calibrated_recall_at_10": curve.get(int(meta.default_nprobe)),
                            "partition_rows_min": min(sizes) if sizes else 0,
                            "partition_rows_max": max(sizes) if sizes else 0,
                            "read_version": meta.read_version, "version": meta.data_version,
                            "seconds": meta.build_seconds}

            with timed("append", "appending the last Parquet file to the indexed table") as s:
                r2 = t.add(last)
                s.update(f"{r2.rows_added:,} rows -> version {r2.version}")
            info = t.index_info() or {}
            out["append"] = {"rows_added": r2.rows_added, "version": r2.version,
                             "unassigned_rows": info.get("unassigned_rows")}

            with timed("search", f"batch search of {len(data.queries)} queries (k={K})") as s:
                res = t.search(data.queries, k=K)
                stats = dict(t.last_search_stats or {})
                s.update(f"{res.num_rows:,} result rows")
            if data.groundtruth is not None:
                truth, truth_src = data.groundtruth, "ground truth file"
            else:
                truth, truth_src = exact_topk(data.base, data.queries, K), "brute force"
            rec = recall_at_k(res, truth, len(data.queries))
            st = search_stats(stats)
            secs = st["seconds"] or 0
            out["search"] = {"k": K, "recall_at_10": round(rec, 4), "ground_truth": truth_src, **st,
                             "queries_per_second": round(len(data.queries) / secs, 1) if secs else None}

            before = meta.read_version  # the version the index build read: the table before its index
            with timed("time_travel", f"time travel to version {before} (before the index)") as s:
                old = t.checkout(before)
                rows_then = old.count_rows()
                indexed_then = old.index_info() is not None
                old_res = old.search(data.queries[:5], k=K)  # an old version stays searchable (exactly)
                s.update(f"{rows_then:,} rows then, {t.count_rows():,} now")
            out["time_travel"] = {"version": before, "rows_then": rows_then, "indexed_then": indexed_then,
                                  "rows_now": t.count_rows(), "version_now": t.version,
                                  "search_rows_then": old_res.num_rows}

            nq = min(10, len(data.queries))
            with timed("filtered_search", f"filtered search ({FILTER!r}) of {nq} queries") as s:
                fres = t.search(data.queries[:nq], k=K, filter=FILTER, columns=["group", "shard"])
                s.update(f"{fres.num_rows} rows")
            groups = set(fres.column("group").to_pylist())
            per_q = np.bincount(fres.column("query_index").to_numpy(), minlength=nq)
            out["filtered_search"] = {"filter": FILTER, "queries": nq, "rows": fres.num_rows,
                                      "all_match": groups <= {3}, "full_k": bool((per_q == K).all()),
                                      "first_rows": fres.slice(0, 3).to_pylist()}
        finally:
            if not keep:
                with contextlib.suppress(Exception):
                    if srv is None:  # a lake of the user's: remove only what the quickstart made
                        lk.drop_table(table, missing_ok=True)
                        lk.store.delete_tree(input_uri)
        out["kept"] = keep
        stop_label = "stopping the S3 server" + ("" if keep else " and deleting its data")
        if srv is not None:
            with timed("stop_s3", stop_label):
                stack.close()

    checks = {
        "rows ingested": out["ingest"]["rows_added"] + out["append"]["rows_added"] == n,
        "re-run of the same files committed nothing": out["idempotent_rerun"]["skipped"]
        and out["idempotent_rerun"]["version"] == out["ingest"]["version"],
        f"recall@10 >= {MIN_RECALL}": out["search"]["recall_at_10"] >= MIN_RECALL,
        "time travel sees the rows before the append": out["time_travel"]["rows_then"] == out["ingest"]["rows_added"]
        and not out["time_travel"]["indexed_then"],
        "filtered search returns only matching rows, k per query": out["filtered_search"]["all_match"]
        and out["filtered_search"]["full_k"],
    }
    out["checks"] = checks
    out["ok"] = all(checks.values())
    timings["total"] = round(time.time() - t_all, 3)
    return out
