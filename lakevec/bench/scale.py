"""``lakevec bench scale``: metadata cost as tables grow: appends into 1M/4M/16M-row tables, cold opens
after many commits.

Everything runs on an embedded S3 server (SeaweedFS on loopback); the measured operations go through a
counting proxy (``bench.s3proxy``), so requests and bytes are the server's view.

* **append**: for each size N (``--sizes``, default 1M, 4M, 16M rows, ``--dim`` 64), a table of N rows is
  loaded in ``--load-commits`` commits (outside the timing; the same history for every size), then ``--appends`` appends of ``--append-rows`` (default 100,000) new rows
  with new, increasing ids are made by a freshly connected client (cold caches): time, requests and bytes
  read from the store (GET/HEAD/LIST responses), and the bytes of id runs read for the uniqueness check.
  Also reported, as information: the same append with ids that overlap the whole table's id range (random
  ids: the id runs they overlap must be read). Target: bytes read and time grow <= 1.2x from the smallest
  to the largest table.
* **open**: a table after ``--commits`` small commits (default 1,000) and a table with one commit; a fresh
  client opens each (``Table.snapshot()``: Lance manifest, the lakevec state, the index): distinct objects
  read, requests, time (median of ``--repeat``). Targets: <= 20 objects; <= 2x the fresh table's time.
"""
from __future__ import annotations

import argparse
import time
import uuid

import numpy as np

from .engines import bench_main, log, mmm, table, target
from .measure import summarize

BENCH = "scale"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lakevec bench scale", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000,4000000,16000000", help="table sizes in rows (comma-separated)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--append-rows", type=int, default=100_000)
    p.add_argument("--appends", type=int, default=3, help="appends measured per size (min/median/max)")
    p.add_argument("--load-commits", type=int, default=8, help="commits that load each table (the same for every "
                                                                 "size, so the tables differ only in rows)")
    p.add_argument("--commits", type=int, default=1000, help="small commits before the cold-open measurement")
    p.add_argument("--repeat", type=int, default=5, help="cold opens measured per table")
    p.add_argument("--index", action="store_true", help="index the tables before appending (appends then assign "
                                                        "rows to partitions and read the centroids)")
    p.add_argument("--skip-open", action="store_true")
    p.add_argument("--skip-append", action="store_true")
    p.add_argument("--out", help="write the report as JSON to this path")
    return p


def _rows(start: int, n: int, dim: int, seed: int, ids=None, step: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + step * n, step, dtype=np.int64) if ids is None else ids
    return {"id": ids, "vector": rng.standard_normal((n, dim), dtype=np.float32)}


def _read_counts(c: dict) -> dict:
    return {"requests": c["GET"] + c["HEAD"] + c["LIST"], "gets": c["GET"], "heads": c["HEAD"], "lists": c["LIST"],
            "bytes_read": c["bytes_out"]}


def _distinct_objects(log_entries) -> int:
    return len({path for kind, method, path, status, sent in log_entries if kind in ("GET", "HEAD")})


def _append_bench(srv, proxy, args, sizes) -> list[dict]:
    """Load every size first, then append round-robin across the sizes (size 1, size 2, size 3, size 1, ...):
    drifts of the machine's load hit every size alike instead of one of them."""
    import lakevec
    direct = dict(srv.storage_options)
    via = dict(srv.storage_options, aws_endpoint=proxy.endpoint)
    uris = {}
    for n in sizes:
        uri = srv.uri("lakevec", f"scale-{n}-{uuid.uuid4().hex[:8]}")
        t = lakevec.connect(uri, storage_options=direct).create_table("t", dim=args.dim)
        t0 = time.perf_counter()
        batch = -(-n // args.load_commits)
        for s in range(0, n, batch):  # even ids 0, 2, ..., 2n - 2: random odd ids overlap them all
            t.add(_rows(2 * s, min(batch, n - s), args.dim, seed=s, step=2))
        if args.index:
            t.build_index()
        uris[n] = uri
        log(BENCH, f"loaded {n:,} rows in {time.perf_counter() - t0:.0f}s ({len(t.snapshot().fragments)} fragments)")
    samples = {n: [] for n in sizes}
    for rep in range(args.appends + 1):  # the extra last round: overlapping (random) ids, information only
        overlapping = rep == args.appends
        for n in sizes:
            start = 2 * n + rep * args.append_rows  # new, increasing ids (the usual ETL case)
            ids = None
            if overlapping:  # random odd ids across the whole table's id range: every id run can hold them
                ids = 2 * np.random.default_rng(rep).choice(n, args.append_rows, replace=False) + 1
            data = _rows(start, args.append_rows, args.dim, seed=10_000 + rep, ids=ids)
            cold = lakevec.connect(uris[n], storage_options=via, memory_cache_bytes=0).open_table("t")
            proxy.reset()
            t0 = time.perf_counter()
            r = cold.add(data)
            sec = time.perf_counter() - t0
            c = _read_counts(proxy.reset())
            samples[n].append({"seconds": sec, **c, "ids_read_bytes": r.ids_read_bytes, "rows": r.rows_added,
                               "overlapping": overlapping})
            log(BENCH, f"{n:,} rows: append of {r.rows_added:,} ({'random' if overlapping else 'new'} ids) "
                       f"{sec:.2f}s, {c['requests']} read requests, {c['bytes_read']:,} bytes read, "
                       f"id runs {r.ids_read_bytes:,} bytes")
    out = []
    for n in sizes:
        seq = [s for s in samples[n] if not s["overlapping"]]
        out.append({"rows": n, "seconds": summarize(s["seconds"] for s in seq),
                    "bytes_read": summarize(s["bytes_read"] for s in seq),
                    "requests": summarize(s["requests"] for s in seq),
                    "ids_read_bytes": summarize(s["ids_read_bytes"] for s in seq),
                    "random_ids": samples[n][-1], "samples": samples[n]})
    return out


def _open_bench(srv, proxy, args) -> dict:
    import lakevec
    direct = dict(srv.storage_options)
    via = dict(srv.storage_options, aws_endpoint=proxy.endpoint)
    res = {}
    for label, commits in (("fresh", 1), ("history", args.commits)):
        uri = srv.uri("lakevec", f"open-{label}-{uuid.uuid4().hex[:8]}")
        t = lakevec.connect(uri, storage_options=direct).create_table("t", dim=args.dim)
        t.add(_rows(0, 10_000, args.dim, seed=1))
        t.build_index(num_partitions=16)
        t0 = time.perf_counter()
        for i in range(commits - 1):
            t.add(_rows(100_000 + 10 * i, 10, args.dim, seed=i))
            if i and i % 200 == 0:
                log(BENCH, f"{label}: {i} commits ({time.perf_counter() - t0:.0f}s)")
        version = t.version
        samples = []
        for _ in range(args.repeat):
            proxy.reset()
            t0 = time.perf_counter()
            cold = lakevec.connect(uri, storage_options=via, memory_cache_bytes=0).open_table("t")
            snap = cold.snapshot()
            sec = time.perf_counter() - t0
            entries = proxy.log()
            c = _read_counts(proxy.reset())
            assert snap.version == version
            samples.append({"seconds": sec, "objects": _distinct_objects(entries), **c})
        res[label] = {"commits": commits, "version": version, "fragments": len(snap.fragments),
                      "seconds": summarize(s["seconds"] for s in samples),
                      "objects": summarize(s["objects"] for s in samples),
                      "requests": summarize(s["requests"] for s in samples),
                      "bytes_read": summarize(s["bytes_read"] for s in samples), "samples": samples}
        log(BENCH, f"open {label} ({commits} commits, version {version}): "
                   f"{res[label]['objects']['median']:.0f} objects, {res[label]['seconds']['median'] * 1000:.0f} ms")
    return res


def run(args) -> dict:
    from ..store.seaweed import EmbeddedS3
    from .report import machine_info
    from .s3proxy import CountingProxy
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    rep: dict = {"bench": BENCH, "machine": machine_info(), "config": vars(args), "targets": []}
    with EmbeddedS3(buckets=("lakevec",)) as srv, CountingProxy(srv.endpoint, keep_log=True) as proxy:
        if not args.skip_append:
            rep["append"] = app = _append_bench(srv, proxy, args, sizes)
            lo, hi = app[0], app[-1]
            for field in ("bytes_read", "seconds"):
                a, b = lo[field]["median"], hi[field]["median"]
                ratio = b / a if a else None
                rep["targets"].append(target(f"append {field} {hi['rows']:,} / {lo['rows']:,} rows", ratio, "<=", 1.2))
        if not args.skip_open:
            rep["open"] = op = _open_bench(srv, proxy, args)
            rep["targets"].append(target(f"cold open after {args.commits} commits: objects",
                                         op["history"]["objects"]["median"], "<=", 20))
            rep["targets"].append(target(f"cold open after {args.commits} commits / fresh table: time",
                                         op["history"]["seconds"]["median"] / op["fresh"]["seconds"]["median"], "<=",
                                         2.0))
    rep["machine_after"] = machine_info()
    return rep


def format_report(rep: dict) -> str:
    lines = [f"lakevec bench scale (load average {rep['machine'].get('loadavg_1_5_15')} before, "
             f"{rep.get('machine_after', {}).get('loadavg_1_5_15')} after)", ""]
    if rep.get("append"):
        rows = [["table rows", "append s", "requests", "bytes read", "id runs read", "random ids: s / bytes read"]]
        for a in rep["append"]:
            r = a["random_ids"]
            rows.append([f"{a['rows']:,}", mmm(a["seconds"], ".2f"), mmm(a["requests"], ".0f"),
                         mmm(a["bytes_read"], ",.0f"), mmm(a["ids_read_bytes"], ",.0f"),
                         f"{r['seconds']:.2f} / {r['bytes_read']:,}"])
        lines += [f"append of {rep['config']['append_rows']:,} rows with new ids, cold client:", table(rows), ""]
    if rep.get("open"):
        rows = [["table", "commits", "fragments", "objects", "requests", "bytes read", "ms"]]
        for k, o in rep["open"].items():
            rows.append([k, f"{o['commits']:,}", f"{o['fragments']:,}", mmm(o["objects"], ".0f"),
                         mmm(o["requests"], ".0f"), mmm(o["bytes_read"], ",.0f"),
                         mmm({kk: (v * 1000 if isinstance(v, float) else v) for kk, v in o["seconds"].items()}, ".0f")])
        lines += ["cold open (Table.snapshot() by a new client):", table(rows), ""]
    lines.append("targets:")
    for t in rep["targets"]:
        v = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  {t['status']:4}  {t['name']}: {v} ({t['op']} {t['threshold']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    return bench_main(BENCH, parser, run, format_report, argv)
