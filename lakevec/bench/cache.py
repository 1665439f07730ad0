"""``lakevec bench cache``: the NVMe cache on an S3 server -- cold, warm, local disk and Lance native.

On one table (synthetic clustered vectors, ``--rows`` x ``--dim``, default 1M x 128) stored on an
embedded SeaweedFS S3 server on loopback, side by side:

``lakevec_cold``   lakevec on S3 with an empty cache before every measured search (cache cleared, not timed)
``lakevec_warm``   lakevec on S3 with the cache holding the probed partitions (warmed first, not timed)
``lakevec_warm_verify``  (``--verify-always``) warm, with the CRC-32 of every cached file checked on every use
``lakevec_local``  the same lake copied to local disk (byte-identical objects): the reference for warm
``lance_native``   Lance's own IVF_FLAT index (same nlist and nprobe) on a copy of the data on the same
                   server, searched with ``ds.to_table(nearest=...)``; ``lance_native`` keeps one dataset
                   handle (its in-memory index cache warms up over the queries), ``lance_native_cold``
                   opens a fresh handle before every query (not timed), i.e. no cached IVF partitions.

Per contender: single-query latency p50/p95 (``--queries`` queries one at a time), batch queries/s
(``--batch`` queries in one call), recall@10 against exact search, and per query the object-store
GETs (HEAD counted as GET) and bytes -- from lakevec's counters and Lance's ``io_stats``, and again at
a counting proxy in front of the server (``server_*``: what the server saw, data files and metadata).
``--repeat`` runs every measurement that many times; the report gives min/median/max over repetitions.

Targets (issue 4): warm: zero object-store GETs for data files of hot partitions; warm batch search
within 1.2x of the local-disk lake; cold: bytes read per query <= 1.2x the bytes of the probed
partitions; cold p50 single-query latency below Lance native IVF_FLAT's (checked against the cold
handle, the like-for-like peer; the long-lived handle is reported too).

``--workdir DIR`` keeps the S3 server's data, the local copy and the Lance copy, so a second run skips
the builds. Exit code 0 when every target passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TABLE = "bench"


def _log(msg: str) -> None:
    print(f"[bench cache] {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="lakevec bench cache", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="table rows (default 1M)")
    p.add_argument("--dim", type=int, default=128, help="vector dimension (default 128)")
    p.add_argument("--partitions", type=int, default=None, help="IVF partitions (default: lakevec's, ~sqrt(rows))")
    p.add_argument("--nprobe", type=int, default=None,
                   help="partitions probed per query, for every contender (default: lakevec's calibrated nprobe)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=100, help="single queries timed per contender (default 100)")
    p.add_argument("--batch", type=int, default=1000, help="queries in the batch search (default 1000)")
    p.add_argument("--count-queries", type=int, default=20,
                   help="queries replayed through the counting proxy per contender (default 20)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of every measurement (default 3)")
    p.add_argument("--cache-bytes", type=int, default=None, help="cache budget (default: 2x the table)")
    p.add_argument("--workdir", default=None, help="keep server data, local copy and Lance copy here")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-lance", action="store_true", help="do not build/measure Lance native")
    p.add_argument("--verify-always", action="store_true",
                   help="also measure warm with the checksum checked on every use (verify='always')")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------
# data and builds
# ----------------------------------------------------------------------------------------------

def load_data(rows: int, dim: int, n_queries: int, seed: int, k: int):
    """Return (base (memmap or array), queries, exact top-k ids)."""
    try:
        from . import datasets
    except ImportError:  # pragma: no cover - datasets is part of lakevec.bench
        datasets = None
    if datasets is not None and hasattr(datasets, "clustered_dataset"):
        ds = datasets.clustered_dataset(rows, n_queries, dim=dim, seed=seed, gt_k=k, parquet=False,
                                        progress=_log)
        return ds.base, np.asarray(ds.queries, dtype=np.float32), np.asarray(ds.gt_ids)[:, :k]
    rng = np.random.default_rng(seed)  # pragma: no cover - fallback without lakevec.bench.datasets
    centers = rng.standard_normal((max(1, int(np.sqrt(rows))), dim)).astype(np.float32) * 3
    base = (centers[rng.integers(0, len(centers), rows)] + rng.standard_normal((rows, dim))).astype(np.float32)
    q = (centers[rng.integers(0, len(centers), n_queries)] + rng.standard_normal((n_queries, dim))).astype(np.float32)
    d = (q ** 2).sum(1)[:, None] - 2 * q @ base.T + (base ** 2).sum(1)[None, :]
    return base, q, np.argsort(d, axis=1)[:, :k]


def _batches(base, chunk=65536):
    import pyarrow as pa
    dim = base.shape[1]
    for s in range(0, len(base), chunk):
        x = np.ascontiguousarray(base[s:s + chunk], dtype=np.float32)
        yield pa.record_batch([pa.array(np.arange(s, s + len(x), dtype=np.int64)),
                               pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim)], names=["id", "vector"])


def build_lakevec(srv, base, partitions, prefix="lake"):
    import pyarrow as pa
    import lakevec
    uri = srv.uri("lakevec", prefix)
    lake = lakevec.connect(uri, storage_options=srv.storage_options)
    if TABLE in lake.table_names():
        t = lake.open_table(TABLE)
        if t.count_rows() == len(base) and t.index_info() is not None:
            _log(f"reusing the lakevec table at {uri}")
            return uri
        lake.drop_table(TABLE)
    t = lake.create_table(TABLE, dim=base.shape[1])
    t0 = time.time()
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), base.shape[1]))])
    t.add(pa.RecordBatchReader.from_batches(schema, _batches(base)))
    _log(f"ingested {len(base):,} rows into {uri} in {time.time() - t0:.1f} s")
    t0 = time.time()
    meta = t.build_index(num_partitions=partitions)
    _log(f"built the IVF index ({meta.num_partitions} partitions, default nprobe {meta.default_nprobe}) "
         f"in {time.time() - t0:.1f} s")
    return uri


def copy_to_local(srv, lake_uri: str, dest: Path) -> str:
    """Copy every object of the lake to ``dest`` (byte-identical): the local-disk reference lake."""
    import pyarrow.fs as pafs
    marker = dest / ".complete"
    if marker.exists():
        return str(dest)
    if dest.exists():
        shutil.rmtree(dest)
    from ..store.location import parse_location
    from ..store.objects import ObjectStore
    loc = parse_location(lake_uri, srv.storage_options)
    store = ObjectStore(loc)
    t0 = time.time()
    pafs.copy_files(loc.fs_path(lake_uri), str(dest), source_filesystem=store.fs,
                    destination_filesystem=pafs.LocalFileSystem(), use_threads=True)
    marker.write_text("ok")
    _log(f"copied the lake to local disk {dest} in {time.time() - t0:.1f} s")
    return str(dest)


def build_lance(srv, base, nlist, prefix="lance-native"):
    from .peers import LanceIvfFlatPeer
    uri = srv.uri("lakevec", f"{prefix}/data.lance")
    peer = LanceIvfFlatPeer(uri, srv.storage_options)
    try:
        peer.open()
        if peer.ds.count_rows() == len(base):
            info = peer.build(None, nlist=nlist)
            _log(f"Lance IVF_FLAT at {uri}: {'reused' if info['index_reused'] else 'rebuilt'} index")
            return uri
    except Exception:
        pass
    t0 = time.time()
    info = peer.build(base, nlist=nlist)
    _log(f"wrote the Lance copy and built IVF_FLAT (nlist {nlist}) in {time.time() - t0:.1f} s "
         f"(write {info['write_s']:.1f} s, index {info['index_s']:.1f} s)")
    return uri


# ----------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------

def _ids(result, m, k):
    from .peers import table_to_ids
    return table_to_ids(result, m, k)


def _recall(found, truth, k):
    from .measure import recall_at_k
    return float(recall_at_k(found, truth, k))


def _pct(lat):
    a = np.asarray(lat) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95))}


def measure_lakevec(t, queries, truth, k, nprobe, batch_q, batch_truth, mode: str):
    """mode: "cold" (cache cleared before every search), "warm" (cache warmed), "local"."""
    cache = t.lake.cache
    snap = t.snapshot()
    pbytes = {p: sum(f.file_size for f in frs) for p, frs in snap.by_partition.items()}
    if mode == "warm":
        probed = sorted(set(snap.model.probe(np.concatenate([queries, batch_q]), nprobe).ravel().tolist()))
        w = cache.warm(t, probed)
        if w["skipped_partitions"]:
            _log(f"warning: {len(w['skipped_partitions'])} probed partitions did not fit the cache budget")
    lat, gets, nbytes, ratio, found, data_gets = [], [], [], [], [], []
    for q in queries:
        if mode == "cold":
            cache.clear()
        before = t.store.counters.snapshot()
        t0 = time.perf_counter()
        r = t.search(q, k=k, nprobe=nprobe)
        lat.append(time.perf_counter() - t0)
        io = t.store.counters.snapshot() - before
        gets.append(io.gets)
        # the search's own counts start after it opened the version: partition data, no manifest reads
        data_gets.append((t.last_search_stats or {}).get("io", {}).get("gets", io.gets))
        nbytes.append(io.bytes_read)
        probe_bytes = sum(pbytes.get(p, 0) for p in snap.model.probe(q[None, :], nprobe)[0])
        ratio.append(io.bytes_read / probe_bytes if probe_bytes else 0.0)
        found.append(_ids(r, 1, k)[0])
    if mode == "cold":
        cache.clear()
    before = t.store.counters.snapshot()
    t0 = time.perf_counter()
    rb = t.search(batch_q, k=k, nprobe=nprobe)
    bsec = time.perf_counter() - t0
    bio = t.store.counters.snapshot() - before
    batch_data_gets = (t.last_search_stats or {}).get("io", {}).get("gets", bio.gets)
    out = {**_pct(lat), "data_gets_per_query": float(np.mean(data_gets)),
           "batch_data_gets_per_query": batch_data_gets / len(batch_q), "qps": len(batch_q) / bsec, "batch_seconds": bsec,
           "gets_per_query": float(np.mean(gets)), "bytes_per_query": float(np.mean(nbytes)),
           "bytes_vs_probed": float(np.median(ratio)), "bytes_vs_probed_max": float(np.max(ratio)),
           "batch_gets_per_query": bio.gets / len(batch_q), "batch_bytes_per_query": bio.bytes_read / len(batch_q),
           "batch_cache_hit_ratio": bio.hit_ratio,
           "recall": _recall(np.stack(found), truth, k),
           "batch_recall": _recall(_ids(rb, len(batch_q), k), batch_truth, k)}
    return out


def measure_lance(uri, storage_options, queries, truth, k, nprobe, batch_q, batch_truth, cold: bool):
    from .peers import LanceIvfFlatPeer
    peer = LanceIvfFlatPeer(uri, storage_options)
    peer.open()
    peer.ds.io_stats_incremental()
    lat, gets, nbytes, found = [], [], [], []
    for q in queries:
        if cold:
            peer.open()  # a fresh handle: no cached index partitions (not timed)
            peer.ds.io_stats_incremental()
        t0 = time.perf_counter()
        ids = peer.search_one(q, k, nprobe)
        lat.append(time.perf_counter() - t0)
        st = peer.ds.io_stats_incremental()
        gets.append(st.read_iops)
        nbytes.append(st.read_bytes)
        found.append(ids)
    peer.open()
    peer.ds.io_stats_incremental()
    t0 = time.perf_counter()
    ids = peer.search(batch_q, k, nprobe)
    bsec = time.perf_counter() - t0
    st = peer.ds.io_stats_incremental()
    return {**_pct(lat), "qps": len(batch_q) / bsec, "batch_seconds": bsec,
            "gets_per_query": float(np.mean(gets)), "bytes_per_query": float(np.mean(nbytes)),
            "batch_gets_per_query": st.read_iops / len(batch_q), "batch_bytes_per_query": st.read_bytes / len(batch_q),
            "recall": _recall(np.stack(found), truth, k), "batch_recall": _recall(ids, batch_truth, k)}


def count_at_server(srv, lake_uri, lance_uri, queries, k, nprobe, cache_dir, cache_bytes):
    """Replay ``queries`` one at a time through a counting proxy; return per-query server-side counts."""
    import lakevec
    from .peers import LanceIvfFlatPeer
    from .s3proxy import CountingProxy
    out = {}
    with CountingProxy(srv.endpoint, keep_log=True) as proxy:
        opts = dict(srv.storage_options, aws_endpoint=proxy.endpoint)
        lake = lakevec.connect(lake_uri, storage_options=opts, cache_dir=cache_dir, cache_bytes=cache_bytes)
        t = lake.open_table(TABLE)

        def per_query(fn, before=None):
            rows = []
            for q in queries:
                if before:
                    before()
                proxy.reset()
                fn(q)
                log = proxy.log()
                data = [e for e in log if "/data.lance/data/" in e[2] and e[0] in ("GET", "HEAD")]
                rows.append({"requests": len(log), "gets": sum(1 for e in log if e[0] in ("GET", "HEAD")),
                             "bytes": sum(e[4] for e in log), "data_gets": len(data),
                             "data_bytes": sum(e[4] for e in data)})
            return {f"server_{key}_per_query": float(np.mean([r[key] for r in rows])) for key in rows[0]}

        lake.cache.clear()
        out["lakevec_cold"] = per_query(lambda q: t.search(q, k=k, nprobe=nprobe), before=lake.cache.clear)
        for q in queries:  # warm: the probed partitions are cached
            t.search(q, k=k, nprobe=nprobe)
        out["lakevec_warm"] = per_query(lambda q: t.search(q, k=k, nprobe=nprobe))
        lake.cache.clear()
        if lance_uri:
            peer = LanceIvfFlatPeer(lance_uri, opts)
            peer.open()
            out["lance_native_cold"] = per_query(lambda q: peer.search_one(q, k, nprobe), before=peer.open)
            peer.open()
            out["lance_native"] = per_query(lambda q: peer.search_one(q, k, nprobe))
    return out


def _summ(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def aggregate(runs: list[dict]) -> dict:
    """{contender: {field: {min, median, max}}} over the repetitions."""
    out: dict = {}
    for run in runs:
        for name, fields in run.items():
            for f, v in fields.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.setdefault(name, {}).setdefault(f, []).append(float(v))
    return {n: {f: _summ(vs) for f, vs in fs.items()} for n, fs in out.items()}


def evaluate_targets(summary: dict) -> list[dict]:
    def med(name, field):
        return ((summary.get(name) or {}).get(field) or {}).get("median")

    targets = []

    def add(name, value, threshold, ok, detail=""):
        status = "SKIP" if value is None else ("PASS" if ok else "FAIL")
        if name.startswith("(info)") and value is not None:
            status = "INFO"  # reported, not a target
        targets.append({"target": name, "value": value, "threshold": threshold, "status": status, "detail": detail})

    # data files only: a search also re-reads the table's small manifest to see the latest version
    warm_gets = med("lakevec_warm", "data_gets_per_query")
    warm_batch_gets = med("lakevec_warm", "batch_data_gets_per_query")
    server_warm = med("lakevec_warm", "server_data_gets_per_query")
    vals = [v for v in (warm_gets, warm_batch_gets, server_warm) if v is not None]
    add("warm: zero object-store GETs for data of hot partitions", max(vals) if vals else None, 0,
        bool(vals) and max(vals) == 0, "lakevec counters (single and batch) and the server's view")
    wq, lq = med("lakevec_warm", "qps"), med("lakevec_local", "qps")
    ratio = lq / wq if wq and lq else None
    add("warm batch search within 1.2x of a local-disk lake (time ratio)", ratio, 1.2, ratio is not None and ratio <= 1.2)
    b = med("lakevec_cold", "bytes_vs_probed")
    add("cold: bytes read per query <= 1.2x the probed partitions' bytes", b, 1.2, b is not None and b <= 1.2)
    cp, lp = med("lakevec_cold", "p50_ms"), med("lance_native_cold", "p50_ms")
    add("cold p50 single-query latency < Lance native IVF_FLAT (fresh handle) p50", (cp / lp) if cp and lp else None,
        1.0, cp is not None and lp is not None and cp < lp, f"lakevec {cp} ms vs Lance {lp} ms")
    lp2 = med("lance_native", "p50_ms")
    add("(info) cold p50 vs Lance native with a long-lived handle", (cp / lp2) if cp and lp2 else None, 1.0,
        cp is not None and lp2 is not None and cp < lp2, f"lakevec {cp} ms vs Lance {lp2} ms")
    return targets


def format_report(rep: dict) -> str:
    from .measure import fmt_bytes
    cols = [("p50_ms", "p50 ms", "{:.1f}"), ("p95_ms", "p95 ms", "{:.1f}"), ("qps", "batch q/s", "{:.0f}"),
            ("gets_per_query", "GET/q", "{:.1f}"), ("bytes_per_query", "bytes/q", None),
            ("server_requests_per_query", "srv req/q", "{:.1f}"), ("server_bytes_per_query", "srv bytes/q", None),
            ("recall", "recall", "{:.3f}")]
    lines = [f"lakevec bench cache: {rep['config']['rows']:,} x {rep['config']['dim']} on S3 (SeaweedFS, loopback), "
             f"nlist {rep['config']['nlist']}, nprobe {rep['config']['nprobe']}, k {rep['config']['k']}, "
             f"{rep['config']['queries']} single queries, batch {rep['config']['batch']}, repeat {rep['config']['repeat']}",
             "medians over repetitions [min..max of p50 and q/s]"]
    head = f"{'contender':<20}" + "".join(f"{c[1]:>13}" for c in cols)
    lines.append(head)
    for name in ("lakevec_cold", "lakevec_warm", "lakevec_warm_verify", "lakevec_local", "lance_native_cold",
                 "lance_native"):
        s = rep["summary"].get(name)
        if not s:
            continue
        cells = []
        for f, _, fmt in cols:
            v = (s.get(f) or {}).get("median")
            cells.append("-" if v is None else (fmt_bytes(v) if fmt is None else fmt.format(v)))
        lines.append(f"{name:<20}" + "".join(f"{c:>13}" for c in cells))
        p50, qps = s.get("p50_ms") or {}, s.get("qps") or {}
        if p50 and qps:
            lines.append(f"{'':<20}  p50 {p50['min']:.1f}..{p50['max']:.1f} ms, q/s {qps['min']:.0f}..{qps['max']:.0f}")
    lines.append("targets:")
    for t in rep["targets"]:
        v = t["value"]
        lines.append(f"  [{t['status']}] {t['target']}: {'-' if v is None else f'{v:.3g}'} (threshold {t['threshold']})"
                     + (f"  {t['detail']}" if t.get("detail") else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    import lakevec
    from ..store.seaweed import EmbeddedS3
    from .report import machine_info

    t_start = time.time()
    n_q = max(args.queries, args.count_queries)
    base, queries_all, truth_all = load_data(args.rows, args.dim, n_q + args.batch, args.seed, args.k)
    single_q, single_t = queries_all[:args.queries], truth_all[:args.queries]
    batch_q, batch_t = queries_all[n_q:n_q + args.batch], truth_all[n_q:n_q + args.batch]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lakevec-bench-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    cache_dir = work / "nvme-cache"
    try:
        with EmbeddedS3(workdir=str(work / "s3")) as srv:
            lake_uri = build_lakevec(srv, base, args.partitions)
            lake0 = lakevec.connect(lake_uri, storage_options=srv.storage_options)
            t0 = lake0.open_table(TABLE)
            snap = t0.snapshot()
            nlist = snap.model.nlist
            nprobe = args.nprobe or snap.index.default_nprobe
            table_bytes = sum(f.file_size for f in snap.fragments)
            cache_bytes = args.cache_bytes or 2 * table_bytes
            local_uri = copy_to_local(srv, lake_uri, work / "local-lake")
            lance_uri = None if args.skip_lance else build_lance(srv, base, nlist)
            del base
            runs = []
            for r in range(args.repeat):
                _log(f"repetition {r + 1}/{args.repeat}")
                run = {}
                shutil.rmtree(cache_dir, ignore_errors=True)
                lake = lakevec.connect(lake_uri, storage_options=srv.storage_options, cache_dir=str(cache_dir),
                                       cache_bytes=cache_bytes)
                t = lake.open_table(TABLE)
                t.search(single_q[:2], k=args.k, nprobe=nprobe)  # open the dataset, load centroids (not timed)
                run["lakevec_cold"] = measure_lakevec(t, single_q, single_t, args.k, nprobe, batch_q, batch_t, "cold")
                _log(f"  cold: p50 {run['lakevec_cold']['p50_ms']:.1f} ms, {run['lakevec_cold']['qps']:.0f} q/s")
                run["lakevec_warm"] = measure_lakevec(t, single_q, single_t, args.k, nprobe, batch_q, batch_t, "warm")
                _log(f"  warm: p50 {run['lakevec_warm']['p50_ms']:.1f} ms, {run['lakevec_warm']['qps']:.0f} q/s")
                if args.verify_always:
                    lake.cache.verify = "always"
                    run["lakevec_warm_verify"] = measure_lakevec(t, single_q, single_t, args.k, nprobe, batch_q,
                                                                 batch_t, "warm")
                    lake.cache.verify = "changed"
                    _log(f"  warm, checksum on every use: p50 {run['lakevec_warm_verify']['p50_ms']:.1f} ms, "
                         f"{run['lakevec_warm_verify']['qps']:.0f} q/s")
                tl = lakevec.connect(local_uri).open_table(TABLE)
                tl.search(single_q[:2], k=args.k, nprobe=nprobe)
                run["lakevec_local"] = measure_lakevec(tl, single_q, single_t, args.k, nprobe, batch_q, batch_t, "local")
                _log(f"  local: p50 {run['lakevec_local']['p50_ms']:.1f} ms, {run['lakevec_local']['qps']:.0f} q/s")
                if lance_uri:
                    run["lance_native_cold"] = measure_lance(lance_uri, srv.storage_options, single_q, single_t, args.k,
                                                             nprobe, batch_q, batch_t, cold=True)
                    run["lance_native"] = measure_lance(lance_uri, srv.storage_options, single_q, single_t, args.k,
                                                        nprobe, batch_q, batch_t, cold=False)
                    _log(f"  lance: p50 cold {run['lance_native_cold']['p50_ms']:.1f} ms, "
                         f"long-lived {run['lance_native']['p50_ms']:.1f} ms, {run['lance_native']['qps']:.0f} q/s")
                server = count_at_server(srv, lake_uri, lance_uri, queries_all[:args.count_queries], args.k, nprobe,
                                         str(work / "proxy-cache"), cache_bytes)
                for name, counts in server.items():
                    run.setdefault(name, {}).update(counts)
                runs.append(run)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    summary = aggregate(runs)
    rep = {"benchmark": "cache", "version": 1,
           "config": {"rows": args.rows, "dim": args.dim, "nlist": nlist, "nprobe": nprobe, "k": args.k,
                      "queries": args.queries, "batch": args.batch, "count_queries": args.count_queries,
                      "repeat": args.repeat, "cache_bytes": cache_bytes, "table_bytes": table_bytes},
           "summary": summary, "runs": runs, "machine": machine_info(), "seconds": round(time.time() - t_start, 1)}
    rep["targets"] = evaluate_targets(summary)
    print(format_report(rep), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(rep, f, indent=1, default=str)
    failed = [t for t in rep["targets"] if t["status"] == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
