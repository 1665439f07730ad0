"""``lakevec dedup TABLE --threshold T``: find the groups of near-duplicate rows of a table.

Groups are the connected components of the pairs within distance T (a self-join collecting every pair within
T, so a group larger than k+1 is still found whole). Prints how many groups, rows in groups and the largest
group, then ``--show N`` groups (largest first) with ``--columns`` (e.g. the text); ``--output`` writes the
groups (``group_id, id, group_size, distance_to_representative, is_representative``, columns) as a Parquet
folder exactly once.
"""
from __future__ import annotations

import argparse

from . import common

ENGINES = ("local", "ray", "spark")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dedup", help="near-duplicate groups of a table (connected components within a distance)",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lakevec dedup docs --threshold 0.02 --show 10 --columns text\n"
               "  lakevec dedup docs --threshold 0.02 --engine spark --output s3://bucket/dup-groups/")
    p.add_argument("table", help="table name (indexed)")
    p.add_argument("--threshold", "-t", type=float, required=True, metavar="T",
                   help="rows within distance T of each other are duplicates (the table's metric)")
    p.add_argument("-k", type=int, default=10, help="nearest duplicates per row listed in the pairs (default 10)")
    p.add_argument("--nprobe", type=int, help="partitions probed per row (default: the index's calibrated value)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    p.add_argument("--columns", action="append", metavar="COLS", help="columns shown and written (comma-separated)")
    p.add_argument("--show", type=int, default=10, metavar="N", help="groups to print (default 10)")
    p.add_argument("--show-rows", type=int, default=8, metavar="N", help="rows printed per group (default 8)")
    p.add_argument("--output", "-o", metavar="URI", help="write the groups as a Parquet folder, exactly once")
    p.add_argument("--idempotency-key", metavar="KEY", help="key of --output (default: derived from the inputs)")
    p.add_argument("--max-pairs-per-row", type=int, default=1000, metavar="N",
                   help="most pairs per row (default 1000; rows that hit it are reported)")
    p.add_argument("--at-version", type=int, metavar="V", help="dedup version V of the table")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def sample_groups(groups, n: int, per_group: int, columns: list) -> list[dict]:
    """The first ``n`` groups (largest first) with up to ``per_group`` members each."""
    out = []
    if groups is None or not groups.num_rows:
        return out
    gid = groups.column("group_id").to_pylist()
    cols = ["id", "distance_to_representative", "is_representative", *columns]
    data = {c: groups.column(c).to_pylist() for c in cols if c in groups.column_names}
    size = groups.column("group_size").to_pylist()
    cur = None
    for i, g in enumerate(gid):
        if g != cur:
            if len(out) >= n:
                break
            cur = g
            out.append({"group_id": g, "group_size": size[i], "rows": []})
        if len(out[-1]["rows"]) < per_group:
            out[-1]["rows"].append({c: (round(v, 5) if isinstance(v, float) else v) for c, v in
                                    ((c, data[c][i]) for c in data)})
    return out


def run(args) -> dict:
    import lakevec
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    if args.at_version is not None:
        table = table.checkout(args.at_version)
    columns = common.split_list(args.columns) or []
    with common.progress(args, f"finding duplicates in {table.name!r} (threshold {args.threshold:g})") as prog:
        def say(msg):
            prog.update(msg)
            if common.progress_mode(args) == "lines":
                common.note(args, msg)
        res = lakevec.dedup(table, args.threshold, k=args.k, output=args.output, columns=columns, engine=args.engine,
                            nprobe=args.nprobe, max_pairs_per_row=args.max_pairs_per_row,
                            idempotency_key=args.idempotency_key, storage_options=lake.storage_options,
                            progress=say)
        prog.update(f"{res.summary.get('groups', 0):,} groups")
    return {"table": table.name, "summary": res.summary, "output": res.output, "skipped": res.skipped,
            "report": res.report.to_dict(), "groups": sample_groups(res.groups, args.show, args.show_rows, columns)}


def format_text(r: dict) -> str:
    from .main import format_rows
    s = r["summary"]
    lines = [f"dedup {r['table']!r} at threshold {s.get('threshold', 0):g}: {s.get('groups', 0):,} groups, "
             f"{s.get('rows_in_groups', 0):,} rows in groups ({s.get('duplicate_rows', 0):,} duplicates of a kept "
             f"row), largest group {s.get('largest_group', 0)}; {s.get('pairs', 0):,} pairs within the threshold"]
    if s.get("rows_capped"):
        lines.append(f"  {s['rows_capped']:,} rows had more than {s.get('max_pairs_per_row')} pairs: raise "
                     "--max-pairs-per-row or lower --threshold")
    if s.get("recall_estimate") is not None:
        lines.append(f"  recall estimate of the pairs: {s['recall_estimate']:.4f}")
    if r.get("output"):
        lines.append(f"  groups {'already written' if r.get('skipped') else 'written'} to {r['output']}")
    for g in r.get("groups", []):
        lines.append(f"group {g['group_id']} ({g['group_size']} rows):")
        lines += ["  " + x for x in format_rows(g["rows"], max_width=70).splitlines()]
    return "\n".join(lines)
