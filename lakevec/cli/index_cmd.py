"""``lakevec index TABLE``: build the IVF index and rewrite the table clustered by partition (one commit).

Prints the number of partitions, the default nprobe calibrated on held-out rows with its recall@10,
and the timings of the build phases.
"""
from __future__ import annotations

import argparse

from . import common

ENGINES = ("local", "ray", "spark")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index", help="build the IVF index of a table",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec index docs\n  lakevec index docs --num-partitions 1024 --engine spark")
    p.add_argument("table", help="table name")
    p.add_argument("--num-partitions", type=int, metavar="N",
                   help="IVF partitions (default: about sqrt(rows), at least 40 rows each)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    p.add_argument("--seed", type=int, default=1234, metavar="N",
                   help="random seed of the sample, k-means and calibration (same seed and data: same index; "
                        "default 1234)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def calibrated_recall(meta) -> float | None:
    """Return the calibrated recall@10 at the index's default nprobe, if recorded."""
    for nprobe, recall in getattr(meta, "recall_curve", None) or []:
        if int(nprobe) == int(meta.default_nprobe):
            return float(recall)
    return None


def run(args) -> dict:
    import time

    from ..checks import positive_int

    positive_int(args.num_partitions, "--num-partitions", optional=True)
    common.require_engine(args.engine)
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    rows = table.count_rows()
    t0 = time.time()
    with common.progress(args, f"building the index of {table.name!r} ({rows:,} rows, engine {args.engine})") \
            as step:
        # the build reports its phases (sample, train, assign and write, calibrate, commit) into the step
        meta = common.call_with_progress(table.build_index, step, num_partitions=args.num_partitions,
                                         engine=args.engine, seed=args.seed)
    seconds = time.time() - t0
    sizes = list(meta.partition_sizes or [])
    stats = dict(meta.stats or {})
    return {
        "table": table.name,
        "lake": lake.uri,
        "index_id": meta.index_id,
        "seed": args.seed,
        "rows": rows,
        "metric": meta.metric,
        "num_partitions": meta.num_partitions,
        "partition_rows": {"min": min(sizes) if sizes else 0, "max": max(sizes) if sizes else 0,
                           "mean": round(sum(sizes) / len(sizes), 1) if sizes else 0},
        "default_nprobe": meta.default_nprobe,
        "calibrated_recall_at_10": calibrated_recall(meta),
        "recall_curve": [[int(p), float(r)] for p, r in (meta.recall_curve or [])],
        "read_version": meta.read_version,
        "version": meta.data_version,
        "engine": args.engine,
        "timings": {"sample_seconds": stats.get("sample_seconds"), "train_seconds": stats.get("train_seconds"),
                    "build_seconds": meta.build_seconds, "total_seconds": round(seconds, 3)},
        "tasks": stats.get("tasks"),
        "phases": [{"phase": e.phase, "done": e.done, "total": e.total, "unit": e.unit,
                    "seconds": round(e.elapsed, 3)} for e in step.phases],
    }


def format_text(r: dict) -> str:
    rec = r.get("calibrated_recall_at_10")
    t = r["timings"]
    pr = r["partition_rows"]
    curve = "  ".join(f"{p}:{x:.3f}" for p, x in r.get("recall_curve", []))
    return "\n".join([
        f"indexed {r['table']!r}: {r['rows']:,} rows in {r['num_partitions']} partitions "
        f"({pr['min']}..{pr['max']} rows each, mean {pr['mean']}), metric {r['metric']}",
        f"default nprobe {r['default_nprobe']}: calibrated recall@10 "
        f"{'-' if rec is None else f'{rec:.3f}'} (held-out rows)",
        f"recall@10 by nprobe: {curve or '-'}",
        f"version {r['version']} (read version {r['read_version']}), index {r['index_id']}",
        f"time: sample {common.fmt_seconds(t['sample_seconds'] or 0)}, train {common.fmt_seconds(t['train_seconds'] or 0)}, "
        f"total {common.fmt_seconds(t['total_seconds'] or 0)} ({r.get('tasks') or '?'} task(s), engine {r['engine']})",
    ])
