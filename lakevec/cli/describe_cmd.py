"""``lakevec describe TABLE``: what a table is: dimension, metric, id type, rows, version, fragments, bytes,
the IVF index in force (partitions, default nprobe and its calibrated recall@10, unassigned rows) and the
user columns with their types. ``--at-version V`` describes an older version.
"""
from __future__ import annotations

import argparse

from . import common
from .index_cmd import calibrated_recall

RESERVED = ("id", "vector")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "describe", help="describe a table: schema, rows, version, index in force",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec describe docs\n  lakevec --json describe docs | jq .index.default_nprobe")
    p.add_argument("table", help="table name")
    p.add_argument("--at-version", type=int, metavar="V", help="describe version V (time travel)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def index_summary(info: dict | None) -> dict | None:
    """Return the index in force as shown by describe (None when the table has no index)."""
    if info is None:
        return None
    from ..metadata import IndexMeta

    meta = IndexMeta.from_json(info)
    sizes = list(meta.partition_sizes or [])
    return {"index_id": meta.index_id, "num_partitions": meta.num_partitions, "metric": meta.metric,
            "default_nprobe": meta.default_nprobe, "calibrated_recall_at_10": calibrated_recall(meta),
            "built_on_version": meta.read_version, "committed_version": meta.data_version,
            "trained_on_rows": meta.trained_on, "partition_rows_min": min(sizes) if sizes else None,
            "partition_rows_max": max(sizes) if sizes else None, "unassigned_rows": info.get("unassigned_rows")}


def run(args) -> dict:
    from ..checks import positive_int

    positive_int(args.at_version, "--at-version", optional=True)
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    if args.at_version is not None:
        table = table.checkout(args.at_version)
    with common.progress(args, f"describing {table.name!r}"):
        stats = table.stats(partitions=False)
        info = table.index_info()
        schema = table.schema
        rows = table.count_rows()
    m = table.meta
    return {
        "table": table.name, "lake": lake.uri, "version": stats.get("version", table.version),
        "dim": m.dim, "metric": m.metric, "id_type": m.id_type, "rows": rows,
        "fragments": stats.get("fragments"), "bytes": stats.get("bytes"),
        "index": index_summary(info),
        "columns": [{"name": f.name, "type": str(f.type), "nullable": f.nullable}
                    for f in schema if f.name not in RESERVED],
    }


def format_text(r: dict) -> str:
    fb = common.fmt_bytes
    lines = [f"table {r['table']!r} in {r['lake']}",
             f"  vectors      dim {r['dim']}, metric {r['metric']}, id type {r['id_type']}",
             f"  version      {r['version']}: {r['rows']:,} rows in {r['fragments']} fragment(s), {fb(r['bytes'])}"]
    ix = r.get("index")
    if ix is None:
        lines.append("  index        none (searches scan every row; build one with `lakevec index "
                     f"{r['table']}`)")
    else:
        rec = ix["calibrated_recall_at_10"]
        lines.append(f"  index        {ix['index_id']}: {ix['num_partitions']} partitions "
                     f"({ix['partition_rows_min']}..{ix['partition_rows_max']} rows), built on version "
                     f"{ix['built_on_version']}")
        lines.append(f"  nprobe       default {ix['default_nprobe']} (calibrated recall@10 "
                     f"{'-' if rec is None else f'{rec:.3f}'})")
        unassigned = ix.get("unassigned_rows") or 0
        lines.append(f"  unassigned   {unassigned:,} rows" + (" (appended without a partition: scanned by every "
                                                               "query)" if unassigned else ""))
    cols = r.get("columns") or []
    lines.append("  columns      " + (", ".join(f"{c['name']} {c['type']}" for c in cols) if cols else
                                      "none besides id and vector"))
    return "\n".join(lines)
