"""``lakevec join LEFT TABLE``: offline similarity join of LEFT against the indexed table TABLE.

LEFT is a table of the lake (by name) or Parquet file(s): a path, a folder or a quoted glob, local or s3://
(columns ``--id-column`` and ``--vector-column``). For each left row the join returns its ``-k`` nearest rows of
TABLE (``--radius R``: every row within distance R, combinable with -k), as ``left_id, right_id, distance,
rank`` plus ``--columns`` from either side (``left_<c>``, ``right_<c>``). A self-join (LEFT = TABLE) never
pairs a row with itself; ``--dedup`` keeps each unordered pair once.

TABLE is read at one version for the whole join (``--at-version`` picks an older one). ``--output`` writes a
Parquet folder exactly once: re-running the same join (same inputs, or the same ``--idempotency-key``)
commits nothing. Without ``--output`` the first ``--show`` pairs are printed. The report gives the plan,
partitions and bytes read, how many times each right byte was read, shuffle bytes, I/O, estimated cost,
seconds per phase and a recall estimate (``--recall-sample`` rows searched exactly).
"""
from __future__ import annotations

import argparse

from . import common

ENGINES = ("local", "ray", "spark")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "join", help="similarity join (kNN / range / self-join dedup) of a table or Parquet files with a table",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lakevec join queries docs -k 10 --output s3://bucket/pairs/\n"
               "  lakevec join 's3://bucket/new/*.parquet' docs -k 5 --engine spark --output s3://bucket/nn/\n"
               "  lakevec join docs docs -k 10 --dedup --columns title --show 20\n"
               "  lakevec join docs docs --radius 0.05 -k 0 --dedup --output dups/   # all pairs within 0.05")
    p.add_argument("left", help="left side: a table name, or Parquet path/folder/glob (local or s3://)")
    p.add_argument("table", help="right side: an indexed table")
    p.add_argument("-k", type=int, default=10, help="nearest neighbours per left row (default 10; 0 with --radius: "
                                                    "all pairs within the radius)")
    p.add_argument("--radius", type=float, metavar="R", help="keep pairs within distance R")
    p.add_argument("--nprobe", type=int, help="partitions probed per left row (default: the index's calibrated value)")
    p.add_argument("--dedup", action="store_true", help="self-join: each unordered pair once (left_id < right_id)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    p.add_argument("--output", "-o", metavar="URI", help="write the pairs as a Parquet folder, exactly once")
    p.add_argument("--idempotency-key", metavar="KEY", help="key of --output (default: derived from the inputs)")
    p.add_argument("--columns", action="append", metavar="COLS", help="columns to add from either side (comma-separated)")
    p.add_argument("--left-filter", metavar="SQL", help="SQL predicate on a left table")
    p.add_argument("--right-filter", metavar="SQL", help="SQL predicate on TABLE, applied before scoring")
    p.add_argument("--id-column", default="id", help="id column of Parquet input (default: id)")
    p.add_argument("--vector-column", default="vector", help="vector column of Parquet input (default: vector)")
    p.add_argument("--at-version", type=int, metavar="V", help="join against version V of TABLE")
    p.add_argument("--max-pairs-per-row", type=int, default=1000, metavar="N",
                   help="cap of a range join per left row (default 1000; rows that hit it are reported)")
    p.add_argument("--recall-sample", type=int, default=200, metavar="N",
                   help="left rows searched exactly for the recall estimate (default 200; 0: none)")
    p.add_argument("--plan", choices=("auto", "shuffle", "grouped"), default="auto",
                   help="shuffle left rows to partitions, or group them by nearest centroid (default: cost model)")
    p.add_argument("--memory-mb", type=float, metavar="MB", help="left vectors one task holds (default 512)")
    p.add_argument("--show", type=int, default=10, metavar="N", help="pairs to print without --output (default 10)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def resolve_left(lake, left: str):
    """A table of the lake, or a Parquet path/glob."""
    import re
    if re.fullmatch(r"[A-Za-z0-9_-]{1,128}", left) and not left.endswith("parquet"):
        if left in lake.table_names():
            return lake.open_table(left)
        import os
        if not os.path.exists(left):
            from ..errors import TableNotFoundError
            raise TableNotFoundError(f"left side {left!r} is neither a table of lake {lake.uri} nor a Parquet path")
    return left


def preview(table, n: int) -> list[dict]:
    rows = table.slice(0, max(0, n)).to_pylist()
    for r in rows:
        for k, v in list(r.items()):
            if isinstance(v, float):
                r[k] = round(v, 5)
            elif isinstance(v, (list, bytes)) and len(v) > 8:
                r[k] = f"<{len(v)} values>"
    return rows


def run(args) -> dict:
    import lakevec

    from ..errors import InvalidArgumentError
    k = args.k
    if k is not None and k < 0:
        raise InvalidArgumentError(f"-k must be a positive integer (or 0 with --radius), got {k}")
    if k == 0:
        if args.radius is None:
            raise InvalidArgumentError("-k 0 needs --radius (all pairs within the radius)")
        k = None
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    if args.at_version is not None:
        table = table.checkout(args.at_version)
    left = resolve_left(lake, args.left)
    if not isinstance(left, str) and left.name == table.name and args.at_version is None:
        left = table
    kw = dict(k=k, radius=args.radius, nprobe=args.nprobe, engine=args.engine, output=args.output,
              dedup=args.dedup, columns=common.split_list(args.columns), left_filter=args.left_filter,
              right_filter=args.right_filter, id_column=args.id_column, vector_column=args.vector_column,
              idempotency_key=args.idempotency_key, max_pairs_per_row=args.max_pairs_per_row,
              recall_sample=args.recall_sample, plan=args.plan, storage_options=lake.storage_options,
              memory_budget=int(args.memory_mb * (1 << 20)) if args.memory_mb else None)
    what = f"joining {args.left!r} with {table.name!r} ({'k=' + str(k) if k else 'range'}, engine {args.engine})"
    with common.progress(args, what) as prog:
        def say(msg):
            prog.update(msg)
            if common.progress_mode(args) == "lines":
                common.note(args, msg)
        res = lakevec.knn_join(left, table, progress=say, **kw)
        prog.update(f"{res.report.pairs:,} pairs")
    out = {"report": res.report.to_dict(), "pairs": res.report.pairs, "output": res.output,
           "skipped": res.skipped}
    if res.output is None:
        out["first_rows"] = preview(res.table, args.show)
    return out


def format_text(r: dict) -> str:
    from ..join.report import format_report
    from .main import format_rows
    lines = [format_report(r["report"])]
    if r.get("first_rows"):
        lines.append(f"first {len(r['first_rows'])} pairs:")
        lines += ["  " + x for x in format_rows(r["first_rows"]).splitlines()]
    return "\n".join(lines)
