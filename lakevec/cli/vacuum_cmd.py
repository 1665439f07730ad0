"""``lakevec vacuum TABLE``: remove old versions and the files nothing can use any more.

Removes versions older than --older-than (the current version is never removed), and what no kept
version references and no running job may still commit: data files of failed, killed or retried tasks,
commit records, checkpoints, id runs, quarantine files and index objects of removed versions, expired
claims and leases. A running job holds a lease: nothing written after it started is removed while it
runs. The retention is at least 7 days; a shorter one needs --force (only when no job and no reader
can be using the table). --dry-run reports exactly what a real run would remove.
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
               "  lakevec vacuum docs --older-than 30d --dry-run\n"
               "  lakevec vacuum docs --older-than 1h --force   # nothing else uses the table")
    p.add_argument("table", help="table name")
    p.add_argument("--older-than", default="7d", metavar="DURATION",
                   help="retention: remove what is older than this (seconds or 90s, 15m, 12h, 7d, 2w; default 7d)")
    p.add_argument("--dry-run", action="store_true",
                   help="report what would be removed (exactly what a real run removes); remove nothing")
    p.add_argument("--force", action="store_true",
                   help="allow a retention shorter than 7 days (a running job or a reader of a recent version "
                        "could lose its files)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    seconds = parse_duration(args.older_than)
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    with common.progress(args, f"vacuuming {table.name!r} (older than {common.fmt_seconds(seconds)})"):
        r = table.vacuum(older_than=seconds, dry_run=args.dry_run, force=args.force)
    return {"table": table.name, "lake": lake.uri, **r}


def format_text(r: dict) -> str:
    verb = "would remove" if r.get("dry_run") else "removed"
    return (f"vacuumed {r['table']!r} (version {r['version']} kept): {verb} {r['versions_removed']} old version(s), "
            f"{r['data_files_removed']} data file(s) ({common.fmt_bytes(r['bytes_removed'])}), "
            f"{r['metadata_objects_removed']} metadata object(s), {r['indexes_removed']} index(es), "
            f"{r['claims_removed']} expired claim(s)/lease(s)"
            + (f"; {r['live_jobs']} running job(s) protected" if r.get("live_jobs") else ""))
