"""``lakevec tables``: the tables of a lake with their rows, current version and whether they are indexed.

A table that cannot be opened (damaged metadata, no permission) is listed with its error instead of
failing the whole listing; the command then exits 1 after printing the list.
"""
from __future__ import annotations

import argparse

from . import common


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tables", help="list the tables of a lake (rows, version, indexed)",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec tables --lake s3://my-bucket/lake\n  lakevec --json tables")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def table_row(lake, name: str) -> dict:
    """Return one row of the listing: name, rows, version, indexed, dim, metric (or the error)."""
    from ..errors import LakevecError

    try:
        t = lake.open_table(name)
        info = t.index_info()
        return {"table": name, "rows": t.count_rows(), "version": t.version, "indexed": info is not None,
                "partitions": (info or {}).get("num_partitions"), "dim": t.meta.dim, "metric": t.meta.metric}
    except LakevecError as e:
        return {"table": name, "error": f"{type(e).__name__}: {e}"}


def run(args) -> dict:
    lake = common.open_lake(args)
    with common.progress(args, f"listing the tables of {lake.uri}") as step:
        names = lake.table_names()
        rows = []
        for i, name in enumerate(names):
            step.update(f"{i + 1}/{len(names)} tables")
            rows.append(table_row(lake, name))
    out = {"lake": lake.uri, "tables": rows}
    if any("error" in r for r in rows):
        out["exit_code"] = 1
    return out


def format_text(r: dict) -> str:
    from . import messages
    from .main import format_rows

    rows = r["tables"]
    if not rows:
        return f"no tables in {r['lake']}"
    shown = [{"table": x["table"], "rows": f"{x['rows']:,}", "version": x["version"],
              "indexed": f"yes ({x['partitions']} partitions)" if x["indexed"] else "no",
              "dim": x["dim"], "metric": x["metric"]} if "error" not in x else
             {"table": x["table"], "rows": "?", "version": "?", "indexed": "?", "dim": "?",
              "metric": "?", "error": messages.for_cli(x["error"])} for x in rows]
    return format_rows(shown, max_width=100) + f"\n{len(rows)} table(s) in {r['lake']}"
