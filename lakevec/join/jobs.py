"""Entry points of ``jobs/{spark,ray}_{join,dedup}.py`` (spark-submit, ray job submit, plain python).

    spark-submit jobs/spark_join.py --lake s3://b/lake --left 's3://b/new/*.parquet' --table docs -k 10 \\
        --output s3://b/pairs/2024-06-01/
    ray job submit -- python jobs/ray_dedup.py --lake s3://b/lake --table docs --threshold 0.02 --output s3://b/dups/

Same conventions as the other jobs (``lakevec/jobs.py``): storage options from the AWS_* environment,
progress on stderr, the last stdout line is a JSON summary (the join's report), exit status 0 ok, 1 a lakevec
error (one line ``error: ...`` on stderr), 2 unexpected, 130 interrupted. Under spark-submit the submitted
session is used, under ``ray job submit`` the job's cluster; with plain python a local one is started.
"""
from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger("lakevec.jobs")


def _parser(engine: str, kind: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{engine}_{kind}",
                                description=f"lakevec job: {'similarity join' if kind == 'join' else 'duplicate groups'}"
                                            f" on {engine}")
    p.add_argument("--lake", required=True, help="lake URI: s3://bucket/prefix or a local path")
    p.add_argument("--table", required=True, help="the indexed (right) table")
    if kind == "join":
        p.add_argument("--left", required=True, help="left side: a table name or Parquet path/folder/glob")
        p.add_argument("-k", type=int, default=10, help="neighbours per left row (0 with --radius: all within it)")
        p.add_argument("--radius", type=float)
        p.add_argument("--dedup", action="store_true", help="self-join: each unordered pair once")
        p.add_argument("--id-column", default="id")
        p.add_argument("--vector-column", default="vector")
        p.add_argument("--left-filter")
        p.add_argument("--right-filter")
        p.add_argument("--plan", choices=("auto", "shuffle", "grouped"), default="auto")
    else:
        p.add_argument("--threshold", type=float, required=True)
        p.add_argument("-k", type=int, default=10)
    p.add_argument("--nprobe", type=int)
    p.add_argument("--columns", help="comma-separated columns to add")
    p.add_argument("--output", help="Parquet folder written exactly once (local or s3://)")
    p.add_argument("--idempotency-key")
    p.add_argument("--max-pairs-per-row", type=int, default=1000)
    if engine == "spark":
        p.add_argument("--master", help="Spark master when not run by spark-submit (default local[*])")
    else:
        p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, help="cores of a locally started Spark/Ray (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def _run(engine: str, kind: str, args) -> dict:
    import lakevec

    from ..engines import get_engine
    t0 = time.time()
    opts = {}
    if args.num_cpus:
        opts["num_cpus"] = args.num_cpus
    if engine == "spark" and args.master:
        opts["master"] = args.master
    if engine == "ray" and args.address:
        opts["address"] = args.address
    eng = get_engine(engine, **opts)
    cols = [c.strip() for c in (args.columns or "").split(",") if c.strip()] or None
    lake = lakevec.Lake(args.lake, create=False)  # a wrong lake or table fails before any cluster starts
    table = lake.open_table(args.table)
    with eng:
        if kind == "join":
            left = args.left
            if left in lake.table_names():
                left = table if left == table.name else lake.open_table(left)
            k = None if args.k == 0 else args.k
            res = lakevec.knn_join(left, table, k=k, radius=args.radius, nprobe=args.nprobe, engine=eng,
                                   output=args.output, dedup=args.dedup, columns=cols, left_filter=args.left_filter,
                                   right_filter=args.right_filter, id_column=args.id_column,
                                   vector_column=args.vector_column, idempotency_key=args.idempotency_key,
                                   max_pairs_per_row=args.max_pairs_per_row, plan=args.plan, progress=log.info)
            summary = {"job": f"{engine}_join", "pairs": res.report.pairs, "output": res.output,
                       "skipped": res.skipped, "report": res.report.to_dict()}
        else:
            res = lakevec.dedup(table, args.threshold, k=args.k, output=args.output, columns=cols, engine=eng,
                                nprobe=args.nprobe, max_pairs_per_row=args.max_pairs_per_row,
                                idempotency_key=args.idempotency_key, progress=log.info)
            summary = {"job": f"{engine}_dedup", "summary": res.summary, "output": res.output,
                       "skipped": res.skipped, "report": res.report.to_dict()}
    summary.update({"lake": args.lake, "table": args.table, "seconds": round(time.time() - t0, 3)})
    return summary


def main(engine: str, kind: str, argv=None) -> int:
    """Run a join or dedup job; return the exit status (see the module docstring)."""
    from ..jobs import run_job
    args = _parser(engine, kind).parse_args(argv)
    return run_job(args, lambda: _run(engine, kind, args))
