"""The batch job entry points behind ``jobs/*.py`` (spark-submit, ray job submit, plain python).

    spark-submit jobs/spark_ingest.py --lake s3://bucket/lake --table docs --dim 384 s3://bucket/in/*.parquet
    ray job submit -- python jobs/ray_build_index.py --lake s3://bucket/lake --table docs --num-partitions 1024

Storage options come from the AWS_* environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, AWS_REGION, ...). Progress is logged to stderr; the last line on stdout is a JSON
summary. Exit status: 0 on success, 1 with a one-line ``error: ...`` on stderr when lakevec refused
or failed (bad rows, missing table, storage), 2 for an unexpected failure, 130 when interrupted.
Under spark-submit the submitted Spark session is used; under ``ray job submit`` the job's Ray
cluster (RAY_ADDRESS); with plain python a local Spark/Ray is started for the job and stopped after.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

log = logging.getLogger("lakevec.jobs")


def _parser(engine: str, kind: str) -> argparse.ArgumentParser:
    what = "ingest Parquet files into" if kind == "ingest" else "build the IVF index of"
    p = argparse.ArgumentParser(prog=f"{engine}_{kind}", description=f"lakevec job: {what} a table on {engine}")
    p.add_argument("--lake", required=True, help="lake URI: s3://bucket/prefix or a local path")
    p.add_argument("--table", required=True, help="table name")
    if kind == "ingest":
        p.add_argument("sources", nargs="+", help="Parquet files, folders or globs (local or s3://)")
        p.add_argument("--dim", type=int, help="create the table with this dimension if it does not exist")
        p.add_argument("--metric", default="l2", choices=("l2", "cosine", "dot"),
                       help="metric of a table created by this job (default l2)")
        p.add_argument("--id-type", default="int64", choices=("int64", "string"))
        p.add_argument("--id-column", default="id")
        p.add_argument("--vector-column", default="vector")
        p.add_argument("--on-bad-rows", default="raise", choices=("raise", "skip", "quarantine"))
        p.add_argument("--idempotency-key", help="key of this ingestion (default: derived from the sources)")
        p.add_argument("--build-index", action="store_true", help="build the IVF index after ingesting")
    p.add_argument("--num-partitions", type=int, help="IVF partitions (default: about sqrt(rows))")
    p.add_argument("--task-mb", type=float, help="data per task in MB (default: about one task per core)")
    if engine == "spark":
        p.add_argument("--master", help="Spark master when not run by spark-submit (default local[*])")
    else:
        p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, help="cores of a locally started Spark/Ray (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def _engine(engine: str, args):
    from .engines import get_engine
    opts = {}
    if args.task_mb:
        opts["task_bytes"] = int(args.task_mb * (1 << 20))
    if args.num_cpus:
        opts["num_cpus"] = args.num_cpus
    if engine == "spark" and args.master:
        opts["master"] = args.master
    if engine == "ray" and args.address:
        opts["address"] = args.address
    return get_engine(engine, **opts)


def _open_table(args, create: bool):
    import lakevec
    lake = lakevec.connect(args.lake)
    if args.table in lake.table_names():
        return lake.open_table(args.table)
    if not create or not getattr(args, "dim", None):
        from .errors import TableNotFoundError
        raise TableNotFoundError(f"table {args.table!r} not found in lake {lake.uri}"
                                 + (" (pass --dim to create it)" if create else ""))
    log.info("creating table %r (dim=%d, metric=%s)", args.table, args.dim, args.metric)
    return lake.create_table(args.table, dim=args.dim, metric=args.metric, id_type=args.id_type, exist_ok=True)


def _run(engine: str, kind: str, args) -> dict:
    t0 = time.time()
    eng = _engine(engine, args)
    summary: dict = {"job": f"{engine}_{'build_index' if kind == 'build' else kind}", "lake": args.lake,
                     "table": args.table}
    with eng:  # one Spark session / Ray connection for the whole job
        table = _open_table(args, create=(kind == "ingest"))
        if kind == "ingest":
            r = table.add(args.sources if len(args.sources) > 1 else args.sources[0], engine=eng,
                          id_column=args.id_column, vector_column=args.vector_column,
                          on_bad_rows=args.on_bad_rows, idempotency_key=args.idempotency_key)
            summary["ingest"] = r.to_dict()
            log.info("ingested %d rows (%d rejected) into version %d%s", r.rows_added, r.rows_rejected, r.version,
                     " (already ingested: nothing to do)" if r.skipped else "")
        if kind == "build" or getattr(args, "build_index", False):
            log.info("building the index of %r on %s", args.table, engine)
            m = table.build_index(num_partitions=args.num_partitions, engine=eng)
            summary["index"] = {"index_id": m.index_id, "num_partitions": m.num_partitions,
                                "default_nprobe": m.default_nprobe, "version": m.data_version,
                                "build_seconds": m.build_seconds, "tasks": m.stats.get("tasks")}
            log.info("index %s: %d partitions, default nprobe %d, %.1fs", m.index_id, m.num_partitions,
                     m.default_nprobe, m.build_seconds)
        summary["rows"] = table.count_rows()
        summary["version"] = table.version
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


def main(engine: str, kind: str, argv=None) -> int:
    """Run a job; return the process exit status (see module doc)."""
    args = _parser(engine, kind).parse_args(argv)
    return run_job(args, lambda: _run(engine, kind, args))


def run_job(args, work) -> int:
    """The body of every job entry point (ingest, index, join, dedup): logging on stderr (``--quiet``: warnings
    only), ``work()`` run, its summary printed as one JSON line; a failure prints one ``error: ...`` line and
    returns 1 (a lakevec error), 2 (anything else) or 130 (interrupted)."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "faiss", "ray", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .errors import LakevecError
    try:
        summary = work()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except LakevecError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug or an environment problem: still one line, plus the log above
        log.debug("unexpected failure", exc_info=True)
        print(f"error: unexpected {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:1000] if text else type(e).__name__
