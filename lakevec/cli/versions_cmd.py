"""``lakevec versions TABLE``: the kept versions of a table, oldest first: time, operation and rows.

Any version listed can be read with ``lakevec search TABLE --at-version V`` (time travel) until
``lakevec vacuum`` removes it. ``--last N`` shows only the newest N.
"""
from __future__ import annotations

import argparse

from . import common

FIELDS = ("version", "timestamp", "operation", "rows")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "versions", help="list the versions of a table (time, operation, rows)",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec versions docs\n  lakevec versions docs --last 5\n"
               "  lakevec search docs --random 10 --at-version 3")
    p.add_argument("table", help="table name")
    p.add_argument("--last", type=int, metavar="N", help="show only the newest N versions")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    from ..checks import positive_int

    last = positive_int(args.last, "--last", optional=True)
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    with common.progress(args, f"reading the versions of {table.name!r}"):
        raw = list(table.versions())
        current = table.version
    versions = [{k: v.get(k) for k in FIELDS} for v in raw]  # keys a library version lacks stay None
    total = len(versions)
    if last is not None:
        versions = versions[-last:]
    return {"table": table.name, "lake": lake.uri, "current_version": current, "count": total,
            "versions": versions}


def format_text(r: dict) -> str:
    from .main import format_rows

    rows = []
    for v in r["versions"]:
        rows.append({"version": f"{v['version']}{' *' if v['version'] == r['current_version'] else ''}",
                     "time": v.get("timestamp") or "-", "operation": v.get("operation") or "-",
                     "rows": "-" if v.get("rows") is None else f"{v['rows']:,}"})
    shown = len(r["versions"])
    head = (f"table {r['table']!r}: {r['count']} version(s)" + (f", newest {shown} shown" if shown < r["count"] else "")
            + f"; current version {r['current_version']} (*)")
    return head + "\n" + format_rows(rows)
