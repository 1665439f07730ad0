"""``lakevec quickstart``: build, index and search a demo table on an embedded S3 server in under a minute.

Starts SeaweedFS on 127.0.0.1 (unless --lake is given), writes SIFT10K (or a synthetic set) as Parquet
to it, ingests it into a lake, re-runs the ingestion (nothing is committed), builds the IVF index, appends
more rows, batch-searches the queries and measures recall@10 against exact ground truth, shows time
travel and a filtered search, then stops the server. Exit code 1 if one of its checks fails.
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from . import common


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart", help="demo: embedded S3 server, ingest, index, batch search, recall",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec quickstart\n  lakevec quickstart --keep\n"
               "  lakevec quickstart --lake s3://my-bucket/scratch/lakevec-demo --rows 5000")
    p.add_argument("--rows", type=int, metavar="N",
                   help="rows to use (default: all 10,000 of SIFT10K; more than that: a synthetic set)")
    p.add_argument("--keep", action="store_true",
                   help="keep the data afterwards (the embedded server's folder, or the table in --lake)")
    p.add_argument("--table", default="quickstart", help="table name (default: quickstart)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding SIFT10K (default: $LAKEVEC_DATA, ../shared/data)")
    p.add_argument("--synthetic", action="store_true", help="use a generated clustered data set")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    from ..errors import InvalidArgumentError
    from ..quickstart import run_quickstart

    if args.rows is not None and args.rows < 100:
        raise InvalidArgumentError(f"--rows must be at least 100, got {args.rows}")
    lake = getattr(args, "lake", None) or None  # quickstart ignores $LAKEVEC_LAKE: the default is its own server
    cache_dir, cache_bytes = common.cache_settings(args)
    result = run_quickstart(lake=lake, storage_options=common.storage_options(args), rows=args.rows,
                            keep=args.keep, table=args.table, data_dir=args.data_dir, synthetic=args.synthetic,
                            step=lambda label: common.progress(args, label), cache_dir=cache_dir,
                            cache_bytes=cache_bytes)
    if not result["ok"]:
        failed = [name for name, ok in result["checks"].items() if not ok]
        print(f"lakevec: error: quickstart check(s) failed: {'; '.join(failed)}", file=sys.stderr, flush=True)
        result["exit_code"] = 1
    return result


def format_text(r: dict) -> str:
    fb, fs = common.fmt_bytes, common.fmt_seconds
    ix, se, tt, fq = r["index"], r["search"], r["time_travel"], r["filtered_search"]
    where = r["lake"] + (f" (embedded SeaweedFS S3 at {r['server']['endpoint']})" if r.get("server") else "")
    cal = ix.get("calibrated_recall_at_10")
    rows = [
        ("data", f"{r['dataset']}: {r['rows']:,} vectors x {r['dim']} ({r['metric']}), {r['queries']} queries"),
        ("Parquet input", f"{r['parquet']['files']} files, {fb(r['parquet']['bytes'])} at {r['parquet']['uri']}/"),
        ("ingest", f"{r['ingest']['rows_added']:,} rows from {r['parquet']['files'] - 1} files in one commit "
                   f"-> version {r['ingest']['version']}"),
        ("re-run", "the same files again: " + ("nothing committed (already ingested)"
                                               if r["idempotent_rerun"]["skipped"] else "COMMITTED AGAIN")),
        ("index", f"{ix['num_partitions']} IVF partitions ({ix['partition_rows_min']}..{ix['partition_rows_max']} "
                  f"rows), default nprobe {ix['default_nprobe']} (calibrated recall@10 "
                  f"{'-' if cal is None else f'{cal:.3f}'}) -> version {ix['version']}"),
        ("append", f"{r['append']['rows_added']:,} rows into their partitions -> version {r['append']['version']}"),
        ("batch search", f"{r['queries']} queries, k={se['k']}, nprobe {se['nprobe']}: recall@10 "
                         f"{se['recall_at_10']:.3f} vs {se['ground_truth']}; {fs(se['seconds'])} "
                         f"({se['queries_per_second'] or '-'} queries/s)"),
        ("", f"{se['partitions_read']} partitions read once for all queries ({se['rows_read'] or 0:,} rows), "
             f"{fb(se['bytes_read'])} in {se['requests'] if se['requests'] is not None else '-'} requests"),
        ("time travel", f"version {tt['version']} (before the index): {tt['rows_then']:,} rows, "
                        f"{'indexed' if tt['indexed_then'] else 'not indexed'}; now version {tt['version_now']}: "
                        f"{tt['rows_now']:,} rows"),
        ("filtered search", f"filter {fq['filter']!r}: {fq['queries']} queries -> {fq['rows']} rows, "
                            f"{'all match' if fq['all_match'] else 'NON-MATCHING ROWS'}, "
                            f"{'k per query' if fq['full_k'] else 'FEWER THAN k'}"),
    ]
    w = max(len(a) for a, _ in rows)
    lines = [f"lakevec quickstart on {where}"] + [f"  {a:<{w}}  {b}" for a, b in rows]
    t = r["timings"]
    names = [("start_s3", "start S3"), ("load_data", "load"), ("write_parquet", "Parquet"), ("ingest", "ingest"),
             ("build_index", "index"), ("append", "append"), ("search", "search"), ("time_travel", "time travel"),
             ("filtered_search", "filtered"), ("stop_s3", "stop S3"), ("total", "total")]
    lines += textwrap.wrap(", ".join(f"{label} {fs(t[k])}" for k, label in names if k in t), width=110,
                           initial_indent="  timings: ", subsequent_indent=" " * 11)
    lines.append("  checks: " + ", ".join(f"{'ok' if ok else 'FAILED'}: {name}" for name, ok in r["checks"].items())
                 if not r["ok"] else f"  checks: all {len(r['checks'])} passed")
    if r.get("kept"):
        srv = r.get("server") or {}
        if srv.get("workdir"):
            lines.append(f"  kept: the S3 server's data is in {srv['workdir']}; serve it again with\n"
                         f"    python -m lakevec.store.seaweed {srv['workdir']}\n"
                         f"  (it prints the AWS_* variables; then: lakevec --lake {r['lake']} search "
                         f"{r['table']} --random 5)")
        else:
            lines.append(f"  kept: table {r['table']!r} in {r['lake']}")
    return "\n".join(lines)
