"""``lakevec vacuum TABLE``: remove old versions and the orphan files of failed jobs.

Removes versions older than --older-than (Lance cleanup; the current version is never removed) and
lakevec's orphans older than it: data files no remaining version references (left by failed, killed
or retried tasks, or by jobs that died before their commit), partition-map sidecars and index objects
no remaining version uses, and pending ingestion records that never committed (so those sources can
be ingested again). Use a retention longer than your longest-running job: files a running job has
written but not yet committed are orphans until its commit.
"""
from __future__ import annotations

import argparse
import re

from . import common

_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text) -> float:
    """Parse ``3600``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` into seconds."""
    m = _DURATION_RE.match(str(text))
    if not m:
        raise common.UsageError(f"--older-than {text!r} is not a duration: use seconds or a suffix s, m, h, d, w "
                                "(e.g. 7d)")
    return float(m.group(1)) * _UNIT[m.group(2).lower()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "vacuum", help="remove old versions and orphan files of a table",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec vacuum docs                    # keep 7 days of versions\n"
               "  lakevec vacuum docs --older-than 12h\n  lakevec vacuum docs --older-than 0 --dry-run")
    p.add_argument("table", help="table name")
    p.add_argument("--older-than", default="7d", metavar="DURATION",
                   help="retention: remove what is older than this (seconds or 90s, 15m, 12h, 7d, 2w; default 7d)")
    p.add_argument("--dry-run", action="store_true",
                   help="only count lakevec's orphans; remove nothing (old versions are not counted)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    seconds = parse_duration(args.older_than)
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    with common.progress(args, f"vacuuming {table.name!r} (older than {common.fmt_seconds(seconds)})"):
        r = table.vacuum(older_than=seconds, dry_run=args.dry_run)
    return {"table": table.name, "lake": lake.uri, **r}


def format_text(r: dict) -> str:
    verb = "would remove" if r.get("dry_run") else "removed"
    return (f"vacuumed {r['table']!r} (version {r['version']} kept): {verb} {r['versions_removed']} old version(s), "
            f"{r['data_files_removed']} data file(s) ({common.fmt_bytes(r['bytes_removed'])}), "
            f"{r['partmaps_removed']} partition map(s), {r['indexes_removed']} index object(s), "
            f"{r['ingest_records_removed']} pending ingestion record(s)")
