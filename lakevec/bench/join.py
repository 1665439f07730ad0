"""``lakevec bench join``: offline similarity joins, lakevec side by side with its peers, in one process.

Workloads (``--workload``):

* ``clustered``: ``--left-rows`` (default 10,000) queries of the clustered-1m set joined with its 1M base rows
  (128-d, l2; lake on local disk, built once and cached). Truth: the set's exact top-100.
* ``wordnet``: the self-join of the WordNet gloss embeddings (``../shared/data``, 117,659 x 384, cosine), then
  duplicate groups (``lakevec.dedup``); truth: exact top-10 (self excluded) of a sample of rows; groups of
  identical glosses (from ``wordnet_glosses.tsv``) must each be found whole.

Contenders (``--contenders``, each at lakevec's recall where it has a knob):

* ``lakevec[local|ray|spark]``: ``lakevec.knn_join`` on each engine (Ray with 2 CPUs, Spark local[2]);
  ``lakevec[local/no-estimate]`` is the local join without its recall estimate (``recall_sample=0``), to show
  what the estimate costs;
* ``faiss_bbs``: faiss IndexIVFFlat in RAM (same nlist) with ``faiss.contrib.big_batch_search``, at the
  smallest nprobe reaching lakevec's recall: the in-memory form of the same schedule;
* ``lance_per_query`` / ``lance_batch``: Lance's IVF_FLAT index, one query per call (a sample, extrapolated) or
  one 2-D batch call (a sample, extrapolated), at equal recall;
* ``brute_force``: numpy BLAS blocks (a sample, extrapolated);
* ``spark_nearest`` / ``spark_lsh``: Spark's ``DataFrame.nearestByJoin(mode="approx")`` and MLlib
  ``BucketedRandomProjectionLSH.approxSimilarityJoin`` (tuned over a small grid towards lakevec's recall) on a
  subset where they finish (``--subset-left`` x ``--subset-right``, default 1,000 x 20,000: 2,000 x 100,000
  did not finish nearestByJoin in 20 minutes on the 2-core machine), compared with
  ``lakevec[subset]``, lakevec's local join of the same subset.

Every contender runs ``--repeat`` times; the report gives min / median / max of seconds, recall@10, peak RSS,
bytes read, the ratios against lakevec's local engine and the issue's targets with PASS / FAIL, plus the
machine's load average. ``--out`` writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .datasets import default_cache_dir, default_data_dir, exact_knn, load_dataset
from .measure import PeakRSS, fmt_bytes, recall_at_k, summarize

ALL = ("lakevec[local]", "lakevec[local/no-estimate]", "lakevec[ray]", "lakevec[spark]", "faiss_bbs", "lance_per_query", "lance_batch",
       "brute_force", "spark_nearest", "spark_lsh")


def _log(msg: str) -> None:
    print(f"[bench join {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------------

class Workload:
    """What every contender joins: right vectors, left vectors, truth for a sample of left rows."""

    def __init__(self, name, metric, base, left, table, truth, sample, self_join, nlist, lance_source, extra=None):
        self.name, self.metric, self.base, self.left, self.table = name, metric, base, left, table
        self.truth, self.sample, self.self_join, self.nlist = truth, sample, self_join, nlist
        self.lance_source = lance_source
        self.extra = extra or {}


def clustered(args, work: Path) -> Workload:
    from .search import ensure_lake
    ds = load_dataset("clustered-1m", data_dir=args.data_dir, n_queries=10000, progress=_log)
    info = ensure_lake(ds, work, args.nlist, False)
    import lakevec
    table = lakevec.connect(info["root"]).open_table("bench")
    m = args.left_rows
    if m <= len(ds.queries):
        left = np.ascontiguousarray(ds.queries[:m], dtype=np.float32)
        sample = np.arange(m)
        truth = ds.gt_ids[:m, :args.k]
    else:  # more queries from the same distribution (RSS runs); exact truth for the first --truth-rows
        from .datasets import clustered_queries
        left = np.ascontiguousarray(clustered_queries(m), dtype=np.float32)
        sample = np.arange(min(m, args.truth_rows))
        cache = work / f"clustered-truth-{m}-{len(sample)}-k{args.k}.npy"
        if cache.exists():
            truth = np.load(cache)
        else:
            _log(f"exact top-{args.k} of {len(sample):,} of the {m:,} left rows")
            truth, _ = exact_knn(ds.iter_chunks(), left[sample], args.k, "l2")
            np.save(cache, truth)
    return Workload("clustered", "l2", ds.base, left, table, truth, sample, False,
                    table.index_info()["num_partitions"], ds, {"dataset": ds.info(), "build": info})


def wordnet(args, work: Path) -> Workload:
    import lakevec
    ddir = Path(args.data_dir or default_data_dir())
    x = np.load(ddir / "wordnet_minilm384.npy").astype(np.float32)
    n = len(x)
    glosses = _glosses(ddir, n)
    root = work / "lake-wordnet"
    done = root / "bench-build.json"
    if not done.exists():
        import shutil
        shutil.rmtree(root, ignore_errors=True)
        _log(f"building the WordNet lake ({n:,} x {x.shape[1]}, cosine) under {root}")
        lake = lakevec.connect(str(root))
        t = lake.create_table("wordnet", dim=x.shape[1], metric="cosine")
        t0 = time.time()
        t.add({"id": np.arange(n), "vector": x, "gloss": np.asarray(glosses, dtype=object)})
        meta = t.build_index()
        done.write_text(json.dumps({"rows": n, "seconds": time.time() - t0, "nlist": meta.num_partitions,
                                    "default_nprobe": meta.default_nprobe}))
    table = lakevec.connect(str(root)).open_table("wordnet")
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, min(n, args.truth_rows), replace=False))
    cache = work / f"wordnet-truth-{len(sample)}-k{args.k}.npy"
    if cache.exists():
        truth = np.load(cache)
    else:
        _log(f"exact top-{args.k} of {len(sample):,} WordNet rows (self excluded)")
        ids, _ = exact_knn(x, x[sample], args.k + 1, "cosine")
        truth = np.array([[j for j in row if j != s][:args.k] for s, row in zip(sample, ids)])
        np.save(cache, truth)
    return Workload("wordnet", "cosine", x, table, table, truth, sample, True,
                    table.index_info()["num_partitions"], x, {"glosses": glosses})


def _glosses(ddir: Path, n: int) -> list:
    out = []
    with open(ddir / "wordnet_glosses.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            out.append(parts[-1] if parts else "")
    if len(out) == n + 1:  # a header line
        out = out[1:]
    return out[:n]


# --------------------------------------------------------------------------------------------------
# contenders
# --------------------------------------------------------------------------------------------------

def _found(tbl, n_left: int, k: int) -> np.ndarray:
    """ids (n_left, k) from a join result whose left ids are 0..n_left-1 (-1 padded)."""
    out = np.full((n_left, k), -1, dtype=np.int64)
    lid = tbl.column("left_id").to_numpy()
    rid = tbl.column("right_id").to_numpy()
    rank = tbl.column("rank").to_numpy()
    keep = rank < k
    out[lid[keep], rank[keep]] = rid[keep]
    return out


def run_lakevec(w: Workload, args, engine: str, label: str | None = None, recall_sample: int | None = None) -> dict:
    import lakevec
    left = w.left if w.self_join else {"id": np.arange(len(w.left)), "vector": w.left}
    sample = args.recall_sample if recall_sample is None else recall_sample
    with PeakRSS() as mem:
        c0 = os.times()
        t0 = time.perf_counter()
        res = lakevec.knn_join(left, w.table, k=args.k, engine=engine, recall_sample=sample)
        seconds = time.perf_counter() - t0
        c1 = os.times()
    rep = res.report
    n_left = rep.rows_left
    found = _found(res.table, n_left, args.k)
    recall = recall_at_k(found[w.sample], w.truth, args.k)
    io = rep.io.get("total", {})
    right_io = rep.io.get("right", {})
    return {"label": label or f"lakevec[{engine}]", "seconds": seconds, "recall": recall,
            "recall_estimate": (rep.recall or {}).get("estimate"), "rows_left": n_left,
            "rows_per_s": n_left / seconds, "rss_peak_bytes": mem.peak, "rss_delta_bytes": mem.delta,
            "cpu_util": ((c1.user - c0.user) + (c1.system - c0.system)) / seconds,
            "cpu_seconds": (c1.user - c0.user) + (c1.system - c0.system),
            "bytes_read": int(right_io.get("bytes_read", 0) + right_io.get("cache_bytes_read", 0)),
            "scratch_bytes": int(rep.shuffle.get("bytes_written", 0)), "store_bytes_read": io.get("bytes_read"),
            "reads_per_byte": rep.right_bytes.get("reads_per_byte"), "plan": rep.plan, "nprobe": rep.nprobe,
            "tasks": rep.tasks, "phases": rep.seconds, "pairs": rep.pairs}


def run_faiss(w: Workload, args, target: float, peer_cache: dict) -> dict:
    import faiss
    from faiss.contrib.big_batch_search import big_batch_search

    from .peers import FaissIvfFlatPeer, nprobe_for_recall
    peer = peer_cache.get("faiss")
    if peer is None:
        _log("building faiss IndexIVFFlat in RAM")
        peer = FaissIvfFlatPeer(threads=args.threads)
        peer.build(w.base, nlist=w.nlist, metric=w.metric)
        peer_cache["faiss"] = peer
    q = _left_vectors(w)
    kk = args.k + (1 if w.self_join else 0)
    sq = q[w.sample]
    truth = w.truth
    nprobe = peer_cache.get("faiss_nprobe")
    if nprobe is None:
        class _Self:  # self-join: drop each row's own match before computing recall
            nlist = w.nlist

            def search(self, queries, k, nprobe):
                ids = peer.search(queries, kk, nprobe)
                return _drop_self(ids, None, k) if w.self_join else ids
        sel = np.arange(len(sq))
        nprobe, _ = nprobe_for_recall(_Self() if w.self_join else peer, sq[sel], truth[sel], target, args.k,
                                      max_nprobe=w.nlist)
        nprobe = nprobe or w.nlist
        peer_cache["faiss_nprobe"] = nprobe
    peer.index.nprobe = int(nprobe)
    faiss.omp_set_num_threads(args.threads)
    xq = q.copy()
    if w.metric == "cosine":
        faiss.normalize_L2(xq)
    import contextlib
    import io
    with PeakRSS() as mem, contextlib.redirect_stdout(io.StringIO()):  # it prints progress even at verbose=0
        c0 = os.times()
        t0 = time.perf_counter()
        _, ids = big_batch_search(peer.index, xq, kk, method="knn_function", threaded=1,
                                  computation_threads=args.threads)
        seconds = time.perf_counter() - t0
        c1 = os.times()
    if w.self_join:
        ids = _drop_self(ids, np.arange(len(ids)), args.k)
    recall = recall_at_k(ids[w.sample], truth, args.k)
    return {"label": "faiss_bbs", "seconds": seconds, "recall": recall, "nprobe": int(nprobe),
            "cpu_seconds": (c1.user - c0.user) + (c1.system - c0.system),
            "rows_per_s": len(q) / seconds, "rss_peak_bytes": mem.peak, "bytes_read": 0,
            "note": "index in RAM (built outside the timing)"}


def _drop_self(ids, own, k):
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for i, row in enumerate(ids):
        me = own[i] if own is not None else row[0]
        keep = [j for j in row if j != me][:k]
        out[i, :len(keep)] = keep
    return out


def _left_vectors(w: Workload) -> np.ndarray:
    return w.base if w.self_join else w.left


def run_lance(w: Workload, args, target: float, kind: str, work: Path) -> dict:
    from .peers import LanceIvfFlatPeer, at_equal_recall
    uri = str(work / f"lance-{w.name}-{w.nlist}.lance")
    peer = LanceIvfFlatPeer(uri, kind=kind)
    exists = Path(uri).exists()
    if not exists:
        _log(f"building Lance IVF_FLAT ({w.nlist} partitions) for {w.name}")
    peer.build(None if exists else w.lance_source, nlist=w.nlist, metric=w.metric)
    q = _left_vectors(w)[w.sample]
    kk = args.k + (1 if w.self_join else 0)
    truth = w.truth
    if w.self_join:  # Lance cannot exclude the row itself: ask for k+1 and drop it
        base_search, base_one = peer.search, peer.search_one
        own = {}

        def search(queries, k, nprobe):
            ids = base_search(queries, kk, nprobe)
            return _drop_self(ids, None, k)

        def search_one(qv, k, nprobe):
            return _drop_self(base_one(qv, kk, nprobe)[None, :], None, k)[0]
        peer.search, peer.search_one = search, search_one
        del own
    n_meas = args.lance_queries if kind == "per_query" else min(len(q), args.lance_batch_queries)
    res = at_equal_recall(peer, q, truth, target - 1e-9, args.k, max_nprobe=w.nlist,
                          search_queries=min(len(q), 1000), max_queries=min(len(q), n_meas),
                          single_query_samples=0)
    n_left = len(_left_vectors(w))
    return {"label": f"lance_{kind}" if kind == "batch" else "lance_per_query",
            "seconds": n_left / res["qps"], "measured_seconds": res["seconds"], "n_measured": res["n_measured"],
            "recall": res["recall"], "nprobe": res["nprobe"], "rows_per_s": res["qps"],
            "rss_peak_bytes": res["rss_peak_bytes"], "bytes_read": res.get("bytes_read"),
            "extrapolated": res["n_measured"] < n_left}


def run_brute(w: Workload, args) -> dict:
    from .peers import BruteForcePeer, run_peer
    q = _left_vectors(w)[w.sample]
    kk = args.k + (1 if w.self_join else 0)
    peer = BruteForcePeer(w.base, w.metric)
    res = run_peer(peer, q, None, kk, None, max_queries=min(len(q), args.brute_queries), single_query_samples=0)
    n_left = len(_left_vectors(w))
    return {"label": "brute_force", "seconds": n_left / res["qps"], "measured_seconds": res["seconds"],
            "n_measured": res["n_measured"], "recall": 1.0, "rows_per_s": res["qps"],
            "rss_peak_bytes": res["rss_peak_bytes"], "extrapolated": res["n_measured"] < n_left}


# --------------------------------------------------------------------------------------------------
# the Spark peers, on a subset
# --------------------------------------------------------------------------------------------------

def subset(w: Workload, args, work: Path) -> dict:
    """The subset on which the Spark peers finish: left rows, right rows, exact truth, a lakevec table."""
    import lakevec
    nl, nr = args.subset_left, args.subset_right
    base = np.ascontiguousarray(w.base[:nr], dtype=np.float32)
    left = np.ascontiguousarray(_left_vectors(w)[:nl] if not w.self_join else w.base[nr:nr + nl], dtype=np.float32)
    truth, _ = exact_knn(base, left, args.k, w.metric)
    root = work / f"lake-{w.name}-subset-{nr}"
    if not (root / "done").exists():
        import shutil
        shutil.rmtree(root, ignore_errors=True)
        t = lakevec.connect(str(root)).create_table("sub", dim=base.shape[1], metric=w.metric)
        t.add({"id": np.arange(nr), "vector": base})
        t.build_index()
        (root / "done").write_text("ok")
    table = lakevec.connect(str(root)).open_table("sub")
    return {"left": left, "base": base, "truth": truth, "table": table}


def run_lakevec_subset(sub: dict, args) -> dict:
    import lakevec
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        res = lakevec.knn_join({"id": np.arange(len(sub["left"])), "vector": sub["left"]}, sub["table"], k=args.k,
                               recall_sample=args.recall_sample)
        seconds = time.perf_counter() - t0
    found = _found(res.table, len(sub["left"]), args.k)
    return {"label": "lakevec[subset]", "seconds": seconds, "recall": recall_at_k(found, sub["truth"], args.k),
            "rows_per_s": len(sub["left"]) / seconds, "rss_peak_bytes": mem.peak, "nprobe": res.report.nprobe}


def _spark(args):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    s = (SparkSession.builder.master(f"local[{args.threads}]").appName("lakevec-bench-join")
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.memory", "6g").config("spark.sql.shuffle.partitions", str(4 * args.threads))
         .getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    return s


def _frames(spark, sub):
    import pyarrow as pa
    f32 = pa.list_(pa.float32())
    left = spark.createDataFrame(pa.table({"lid": np.arange(len(sub["left"])),
                                           "lvec": pa.array(list(sub["left"]), f32)})).repartition(4)
    right = spark.createDataFrame(pa.table({"rid": np.arange(len(sub["base"])),
                                            "rvec": pa.array(list(sub["base"]), f32)})).repartition(8)
    return left.cache(), right.cache()


class _Deadline:
    """Cancel the Spark jobs of a peer that runs longer than ``seconds`` (its result: did not finish)."""

    def __init__(self, spark, seconds: float):
        import threading
        self.spark, self.seconds, self.hit = spark, seconds, False
        self._timer = threading.Timer(seconds, self._cancel)

    def _cancel(self):
        self.hit = True
        self.spark.sparkContext.cancelAllJobs()

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        return self.hit  # a cancelled job's exception is expected: swallow it


def run_spark_nearest(spark, sub, w: Workload, args) -> dict:
    from pyspark.sql import functions as F
    left, right = _frames(spark, sub)
    left.count(), right.count()
    if w.metric == "cosine":
        rank, direction = F.vector_cosine_similarity(F.col("lvec"), F.col("rvec")), "similarity"
    else:
        rank, direction = F.vector_l2_distance(F.col("lvec"), F.col("rvec")), "distance"
    t0 = time.perf_counter()
    rows = None
    with _Deadline(spark, args.spark_timeout) as dl:
        rows = left.nearestByJoin(right, rank, args.k, "approx", direction).select("lid", "rid").toArrow()
    seconds = time.perf_counter() - t0
    if dl.hit or rows is None:
        return {"label": "spark_nearest", "seconds": None, "did_not_finish_within_s": args.spark_timeout,
                "note": "subset; cancelled at the deadline"}
    found = _topk_from_pairs(rows.column("lid").to_numpy(), rows.column("rid").to_numpy(), None,
                             len(sub["left"]), args.k)
    return {"label": "spark_nearest", "seconds": seconds, "recall": recall_at_k(found, sub["truth"], args.k),
            "rows_per_s": len(sub["left"]) / seconds, "note": "subset, mode='approx' (evaluates the cross product)"}


def _topk_from_pairs(lid, rid, dist, n, k):
    out = np.full((n, k), -1, dtype=np.int64)
    order = np.lexsort((dist,) + (lid,)) if dist is not None else np.argsort(lid, kind="stable")
    lid, rid = lid[order], rid[order]
    starts = np.searchsorted(lid, lid, side="left")
    rank = np.arange(len(lid)) - starts
    keep = rank < k
    out[lid[keep], rank[keep]] = rid[keep]
    return out


def run_spark_lsh(spark, sub, w: Workload, args, target: float) -> dict:
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    left, right = _frames(spark, sub)
    left = left.select("lid", array_to_vector(F.col("lvec")).alias("features")).cache()
    right = right.select("rid", array_to_vector(F.col("rvec")).alias("features")).cache()
    left.count(), right.count()
    # the true 10th neighbour's (Euclidean) distance bounds the join threshold
    tr = sub["truth"]
    d10 = np.sqrt(((sub["left"] - sub["base"][tr[:, -1]]) ** 2).sum(1))
    threshold = float(np.quantile(d10, 0.98))
    best = None
    tried = []
    for tables, bucket in ((4, threshold * 2), (8, threshold * 2), (8, threshold * 4)):
        t0 = time.perf_counter()
        model = BucketedRandomProjectionLSH(inputCol="features", outputCol="hashes", bucketLength=bucket,
                                            numHashTables=tables, seed=1).fit(right)
        joined = model.approxSimilarityJoin(left, right, threshold, distCol="dist")
        win = Window.partitionBy("lid").orderBy("dist")
        top = (joined.select(F.col("datasetA.lid").alias("lid"), F.col("datasetB.rid").alias("rid"), "dist")
               .withColumn("r", F.row_number().over(win)).filter(F.col("r") <= args.k))
        rows = None
        with _Deadline(spark, args.spark_timeout) as dl:
            rows = top.select("lid", "rid", "dist").toArrow()
        seconds = time.perf_counter() - t0
        if dl.hit or rows is None:
            tried.append({"tables": tables, "bucket_length": round(bucket, 4), "recall": None,
                          "did_not_finish_within_s": args.spark_timeout})
            _log(f"spark LSH tables={tables}: did not finish within {args.spark_timeout}s")
            continue
        found = _topk_from_pairs(rows.column("lid").to_numpy(), rows.column("rid").to_numpy(),
                                 rows.column("dist").to_numpy(), len(sub["left"]), args.k)
        rec = recall_at_k(found, sub["truth"], args.k)
        tried.append({"tables": tables, "bucket_length": round(bucket, 4), "recall": rec, "seconds": seconds})
        _log(f"spark LSH tables={tables} bucket={bucket:.3f}: recall {rec:.3f} in {seconds:.1f}s")
        if best is None or rec > best["recall"]:
            best = {"label": "spark_lsh", "seconds": seconds, "recall": rec, "rows_per_s": len(sub["left"]) / seconds,
                    "settings": tried[-1]}
        if rec >= target:
            break
    if best is None:
        return {"label": "spark_lsh", "seconds": None, "grid": tried, "note": "no setting finished"}
    best["grid"] = tried
    best["note"] = f"subset, threshold {threshold:.3f} (98th percentile of the true 10th distance)"
    return best


# --------------------------------------------------------------------------------------------------
# WordNet groups of identical glosses
# --------------------------------------------------------------------------------------------------

def check_groups(w: Workload, args) -> dict:
    import lakevec
    t0 = time.perf_counter()
    res = lakevec.dedup(w.table, args.dedup_threshold, k=args.k)
    seconds = time.perf_counter() - t0
    glosses = w.extra["glosses"]
    same: dict = {}
    for i, g in enumerate(glosses):
        same.setdefault(g, []).append(i)
    ident = [v for v in same.values() if len(v) > 1]
    gid = dict(zip(res.groups.column("id").to_pylist(), res.groups.column("group_id").to_pylist()))
    whole = [len({gid.get(i) for i in grp}) == 1 and None not in {gid.get(i) for i in grp} for grp in ident]
    sizes = sorted((len(g) for g in ident), reverse=True)
    big = {s: all(ok for ok, grp in zip(whole, ident) if len(grp) == s) for s in sizes[:5]}
    return {"seconds": seconds, "threshold": args.dedup_threshold, "summary": res.summary,
            "identical_gloss_groups": len(ident), "found_whole": int(sum(whole)),
            "largest_identical_groups": sizes[:8], "largest_found_whole": {str(k): v for k, v in big.items()},
            "all_found_whole": bool(all(whole))}


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------

def _summ(runs: list[dict]) -> dict:
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = {k: summarize([r.get(k) for r in runs]) for k in sorted(keys)}
    first = runs[0]
    out["_info"] = {k: v for k, v in first.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    return out


def _med(summary: dict, label: str, field: str):
    s = summary.get(label, {}).get(field)
    return s["median"] if s else None


def _targets(summ: dict, workload: str, left_rows: int) -> list[dict]:
    out = []

    def add(name, value, op, threshold):
        if value is None:
            out.append({"name": name, "value": None, "threshold": threshold, "status": "SKIP"})
            return
        ok = value >= threshold if op == ">=" else value <= threshold
        out.append({"name": name, "value": round(float(value), 4), "threshold": threshold,
                    "status": "PASS" if ok else "FAIL"})

    lv = "lakevec[local]"
    add("recall@10 at the default nprobe >= 0.95", _med(summ, lv, "recall"), ">=", 0.95)
    est, rec = _med(summ, lv, "recall_estimate"), _med(summ, lv, "recall")
    add("|recall estimate - measured| <= 0.02", None if est is None or rec is None else abs(est - rec), "<=", 0.02)
    t = _med(summ, lv, "seconds")

    def ratio(label):
        o = _med(summ, label, "seconds")
        return None if o is None or not t else o / t
    add("local >= 1.0x faiss big_batch_search (in RAM)", ratio("faiss_bbs"), ">=", 1.0)
    add("local >= 10x Lance IVF_FLAT per query", ratio("lance_per_query"), ">=", 10.0)
    add("local >= 2x Lance IVF_FLAT 2-D batch", ratio("lance_batch"), ">=", 2.0)
    ts = _med(summ, "lakevec[subset]", "seconds")
    for label, name in (("spark_nearest", "Spark nearestByJoin"), ("spark_lsh", "Spark LSH")):
        o = _med(summ, label, "seconds")
        add(f"subset: lakevec >= 20x {name}", None if o is None or not ts else o / ts, ">=", 20.0)
    for eng in ("ray", "spark"):
        o = _med(summ, f"lakevec[{eng}]", "seconds")
        add(f"{eng} engine >= 0.7x local throughput", None if o is None or not t else t / o, ">=", 0.7)
    if workload == "clustered":
        add("each right byte read once (reads per byte)", _med(summ, lv, "reads_per_byte"), "<=", 1.0)
        if left_rows >= 100_000:
            add("peak RSS <= 2 GB", _med(summ, lv, "rss_peak_bytes"), "<=", 2e9)
    return out


def run_workload(name: str, args) -> dict:
    work = Path(args.work_dir or (default_cache_dir() / "join"))
    work.mkdir(parents=True, exist_ok=True)
    w = clustered(args, work) if name == "clustered" else wordnet(args, work)
    _log(f"workload {name}: {len(_left_vectors(w)):,} left rows x {len(w.base):,} right rows, nlist {w.nlist}")
    want = [c.strip() for c in args.contenders.split(",") if c.strip()] if args.contenders else list(ALL)
    runs: dict = {}
    started = {}
    if "lakevec[ray]" in want:
        import logging

        import ray
        if not ray.is_initialized():
            ray.init(num_cpus=args.threads, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        started["ray"] = True
    spark = None
    if any(c in want for c in ("lakevec[spark]", "spark_nearest", "spark_lsh")):
        spark = _spark(args)
    for rep in range(args.repeat):  # lakevec first: its RSS is measured before peers load their data
        for eng, label, sample in (("local", "lakevec[local]", None), ("local", "lakevec[local/no-estimate]", 0),
                                   ("ray", "lakevec[ray]", None), ("spark", "lakevec[spark]", None)):
            if label in want:
                _log(f"repetition {rep + 1}: {label}")
                runs.setdefault(label, []).append(run_lakevec(w, args, eng, label, sample))
                r = runs[label][-1]
                _log(f"  {r['seconds']:.2f}s recall {r['recall']:.4f} (estimate {r['recall_estimate']}) "
                     f"plan {r['plan']} rss {fmt_bytes(r['rss_peak_bytes'])}")
    target = float(np.median([r["recall"] for r in runs.get("lakevec[local]", [{"recall": 0.95}])]))
    peers: dict = {}
    for rep in range(args.repeat):
        if "faiss_bbs" in want:
            _log(f"repetition {rep + 1}: faiss big_batch_search at recall >= {target:.4f}")
            runs.setdefault("faiss_bbs", []).append(run_faiss(w, args, target, peers))
        for kind, label in (("per_query", "lance_per_query"), ("batch", "lance_batch")):
            if label in want:
                _log(f"repetition {rep + 1}: {label} at recall >= {target:.4f}")
                runs.setdefault(label, []).append(run_lance(w, args, target, kind, work))
        if "brute_force" in want:
            _log(f"repetition {rep + 1}: brute force (sample)")
            runs.setdefault("brute_force", []).append(run_brute(w, args))
    peers.clear()
    if spark is not None and any(c in want for c in ("spark_nearest", "spark_lsh")) and args.subset_left:
        sub = subset(w, args, work)
        sub_target = None
        for rep in range(args.spark_repeat):
            runs.setdefault("lakevec[subset]", []).append(run_lakevec_subset(sub, args))
            sub_target = runs["lakevec[subset]"][-1]["recall"]
            if "spark_nearest" in want:
                _log(f"repetition {rep + 1}: Spark nearestByJoin on {len(sub['left']):,} x {len(sub['base']):,}")
                runs.setdefault("spark_nearest", []).append(run_spark_nearest(spark, sub, w, args))
            if "spark_lsh" in want and rep < args.lsh_repeat:
                _log(f"repetition {rep + 1}: Spark LSH on {len(sub['left']):,} x {len(sub['base']):,}")
                runs.setdefault("spark_lsh", []).append(run_spark_lsh(spark, sub, w, args, sub_target))
    groups = check_groups(w, args) if name == "wordnet" and args.groups else None
    summ = {label: _summ(rs) for label, rs in runs.items()}
    ratios = {}
    t_local = _med(summ, "lakevec[local]", "seconds")
    for label in summ:
        t = _med(summ, label, "seconds")
        if t and t_local and label != "lakevec[subset]":
            ratios[label] = round(t / t_local, 3)  # > 1: lakevec local is that many times faster
    if "lakevec[subset]" in summ:
        ts = _med(summ, "lakevec[subset]", "seconds")
        for label in ("spark_nearest", "spark_lsh"):
            if label in summ and ts:
                ratios[f"{label} (vs lakevec[subset])"] = round(_med(summ, label, "seconds") / ts, 3)
    if spark is not None:
        spark.stop()
    if started.get("ray"):
        import ray
        ray.shutdown()
    from .report import machine_info
    return {"workload": name, "left_rows": len(_left_vectors(w)), "right_rows": len(w.base), "nlist": w.nlist,
            "metric": w.metric, "k": args.k, "repeat": args.repeat, "summary": summ, "ratios_vs_local": ratios,
            "targets": _targets(summ, name, len(_left_vectors(w))), "groups": groups, "runs": runs,
            "machine": machine_info(), "extra": {k: v for k, v in w.extra.items() if k != "glosses"}}


def format_report(r: dict) -> str:
    lines = [f"== lakevec bench join: {r['workload']} ({r['left_rows']:,} x {r['right_rows']:,}, {r['metric']}, "
             f"k={r['k']}, nlist {r['nlist']}, repeat {r['repeat']}) load {r['machine'].get('loadavg_1_5_15')}"]
    lines.append(f"{'contender':<27} {'seconds (min..max)':>26} {'cpu s':>7} {'rows/s':>10} {'recall':>7} "
                 f"{'nprobe':>6} {'peak RSS':>10} {'bytes read':>11} {'x local':>8}")
    for label, s in r["summary"].items():
        sec = s.get("seconds", {})
        rng = f"{sec.get('median', 0):.2f} ({sec.get('min', 0):.2f}..{sec.get('max', 0):.2f})" if sec else "-"
        ex = " *" if s["_info"].get("extrapolated") else ""
        rps = s.get("rows_per_s", {}).get("median")
        cpu = s.get("cpu_seconds", {}).get("median")
        lines.append(f"{label:<27} {rng + ex:>26} {cpu if cpu is not None else '-':>7.7} {rps or 0:>10,.0f} "
                     f"{s.get('recall', {}).get('median') or 0:>7.4f} "
                     f"{s.get('nprobe', {}).get('median') or '-':>6} {fmt_bytes(s.get('rss_peak_bytes', {}).get('median')):>10} "
                     f"{fmt_bytes(s.get('bytes_read', {}).get('median')):>11} "
                     f"{r['ratios_vs_local'].get(label, '-'):>8}")
    lines.append("  (* measured on a sample and extrapolated; x local = contender seconds / lakevec[local] seconds)")
    for k, v in r["ratios_vs_local"].items():
        if "vs lakevec[subset]" in k:
            lines.append(f"  {k}: {v}x")
    if r.get("groups"):
        g = r["groups"]
        lines.append(f"  dedup at {g['threshold']:g}: {g['summary']['groups']:,} groups ({g['seconds']:.1f}s); identical-"
                     f"gloss groups {g['identical_gloss_groups']:,}, found whole {g['found_whole']:,}; largest "
                     f"{g['largest_identical_groups'][:5]} whole: {g['largest_found_whole']}")
    for t in r["targets"]:
        lines.append(f"  [{t['status']}] {t['name']}: {t['value']} (target {t['threshold']})")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lakevec bench join", description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="clustered,wordnet", help="comma-separated: clustered, wordnet")
    p.add_argument("--contenders", default=None, help=f"comma-separated subset of {', '.join(ALL)} (default: all)")
    p.add_argument("--left-rows", type=int, default=10000, help="left rows of the clustered workload")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--lsh-repeat", type=int, default=1, help="repetitions of the (slow) Spark LSH grid")
    p.add_argument("--spark-repeat", type=int, default=1, help="repetitions of the Spark peers on the subset")
    p.add_argument("--spark-timeout", type=float, default=900, help="seconds before a Spark peer is cancelled")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--nlist", type=int, default=None)
    p.add_argument("--recall-sample", type=int, default=200, help="lakevec's recall estimate sample")
    p.add_argument("--truth-rows", type=int, default=2000, help="WordNet rows with exact truth")
    p.add_argument("--lance-queries", type=int, default=300, help="queries measured for Lance per query")
    p.add_argument("--lance-batch-queries", type=int, default=10000,
                   help="queries of Lance's measured 2-D batch (default 10,000: the whole clustered left side)")
    p.add_argument("--brute-queries", type=int, default=500)
    p.add_argument("--subset-left", type=int, default=1000, help="left rows of the Spark peers' subset")
    p.add_argument("--subset-right", type=int, default=20000, help="right rows of the Spark peers' subset")
    p.add_argument("--dedup-threshold", type=float, default=1e-5, help="WordNet dedup threshold (cosine distance)")
    p.add_argument("--no-groups", dest="groups", action="store_false")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default=None, help="write the JSON report here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    reports = []
    for name in [x.strip() for x in args.workload.split(",") if x.strip()]:
        if name not in ("clustered", "wordnet"):
            raise SystemExit(f"unknown workload {name!r}: use clustered, wordnet")
        r = run_workload(name, args)
        print(format_report(r), flush=True)
        print(flush=True)
        reports.append(r)
    if args.out:
        from .report import write_json
        write_json(reports[0] if len(reports) == 1 else {"reports": reports}, args.out)
        _log(f"wrote {args.out}")
    return 0 if all(t["status"] != "FAIL" for r in reports for t in r["targets"]) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
