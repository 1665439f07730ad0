"""``lakevec compact TABLE``: merge small fragments within each IVF partition (one commit).

Appends to an indexed table write one small fragment per partition they touch; distributed
ingestion and index builds write one per task and partition. Compaction merges the fragments of
each partition (never across partitions, so partition purity holds; unassigned fragments are merged
among themselves) into fragments of up to --target-rows rows, and commits one Lance Rewrite on top of
the version it read. The replaced files stay readable by older versions until `lakevec vacuum`.
"""
from __future__ import annotations

import argparse

from . import common

ENGINES = ("local", "ray", "spark")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compact", help="merge small fragments within each partition of a table",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec compact docs\n  lakevec --json compact docs --engine ray")
    p.add_argument("table", help="table name")
    p.add_argument("--target-rows", type=int, metavar="N",
                   help="merge fragments smaller than N rows into fragments of up to N rows "
                        "(default: the table's rows per file, 262144)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    from ..errors import InvalidArgumentError

    if args.target_rows is not None and args.target_rows < 1:
        raise InvalidArgumentError(f"--target-rows must be a positive integer, got {args.target_rows}")
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    with common.progress(args, f"compacting {table.name!r} (engine {args.engine})"):
        r = table.compact(target_rows=args.target_rows, engine=args.engine)
    return {"table": table.name, "lake": lake.uri, "engine": args.engine, **r}


def format_text(r: dict) -> str:
    if r.get("skipped"):
        return f"{r['table']!r}: compaction skipped: {r['skipped']}; version {r['version']} unchanged"
    if not r.get("committed"):
        return (f"{r['table']!r}: nothing to compact ({r['fragments_before']} fragments, none small enough "
                f"to merge within a partition); version {r['version']} unchanged")
    return (f"compacted {r['table']!r}: {r['fragments_before']} -> {r['fragments_after']} fragments "
            f"({r['fragments_merged']} merged into {r['groups']}, {r['rows_rewritten']:,} rows rewritten) "
            f"in {common.fmt_seconds(r.get('seconds') or 0)}; version {r['version']}")
