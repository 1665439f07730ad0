"""``lakevec pipeline run|validate FILE``: the nightly job of a TOML file, every step idempotent.

`run` executes the steps in order (ingest new files -> compact -> optimize -> dedup / join -> export); a
re-run after a crash continues where it stopped (steps that committed find their work done), and a re-run
with nothing new commits nothing. `--dry-run` prints the plan: per step what it would do, rows, bytes,
requests and estimated cost. `--report PATH` (and `--json`) give the run report: time, status, rows, bytes,
requests, cost and recall per step. `validate` checks the file without touching the lake. The file format
is in lakevec/pipeline/spec.py (and the README, "Scheduled pipelines").
"""
from __future__ import annotations

import argparse
import json

from . import common


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline", help="run a scheduled pipeline (TOML): ingest, compact, optimize, dedup/join, export",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec pipeline validate nightly.toml\n  lakevec pipeline run nightly.toml --dry-run\n"
               "  lakevec --json pipeline run nightly.toml --report /var/log/lakevec/nightly.json\n"
               "  lakevec pipeline run nightly.toml --only ingest,compact")
    p.add_argument("action", choices=("run", "validate"), help="run the pipeline, or only check its file")
    p.add_argument("file", help="the pipeline file (TOML)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (rows, bytes, requests, cost); change nothing")
    p.add_argument("--only", action="append", metavar="STEP", help="run only these steps (names or kinds; "
                                                                     "comma-separated or repeated)")
    p.add_argument("--report", metavar="PATH", help="also write the JSON run report to PATH")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    from ..pipeline import load
    from ..pipeline import run as run_pipeline
    pl = load(args.file)
    if getattr(args, "lake", None):
        pl.lake = args.lake
    opts = common.storage_options(args)
    if opts:
        pl.storage_options = {**(pl.storage_options or {}), **opts}
    if args.action == "validate":
        return {"pipeline": pl.name, "lake": pl.lake, "valid": True,
                "steps": [{"name": s.name, "kind": s.kind, "table": s.table} for s in pl.steps]}
    only = common.split_list(args.only)
    label = f"{'planning' if args.dry_run else 'running'} pipeline {pl.name!r}"
    with common.progress(args, label) as step:
        try:
            rep = run_pipeline(pl, dry_run=args.dry_run, only=only, progress=lambda line: step.update(detail=line))
        except Exception as e:
            rep = getattr(e, "run_report", None)
            if rep is not None and args.report:
                _write(args.report, rep)
            raise
    if args.report:
        _write(args.report, rep)
    return rep


def _write(path: str, rep: dict) -> None:
    with open(path, "w") as f:
        json.dump(rep, f, indent=1, default=str)


def format_text(r: dict) -> str:
    if "valid" in r:
        return f"pipeline {r['pipeline']!r} is valid: " + ", ".join(f"{s['name']} ({s['kind']} {s['table']!r})"
                                                                     for s in r["steps"])
    lines = []
    for s in r["steps"]:
        head = f"  {s['name']:<12} {s['kind']:<8} {s['table']:<14}"
        if r["dry_run"]:
            lines.append(f"{head} {s.get('action', '')}; ~{(s.get('bytes_read') or 0) / 1e6:,.1f} MB read, "
                         f"{(s.get('gets') or 0) + (s.get('puts') or 0) + (s.get('lists') or 0)} requests, "
                         f"~${s.get('cost_usd', 0):.5f}")
        else:
            bits = [s["status"]]
            for k, fmt in (("version", "version {}"), ("rows", "{:,} rows"), ("recall", "recall@k ~{:.3f}")):
                if s.get(k) is not None:
                    bits.append(fmt.format(s[k]))
            lines.append(f"{head} {', '.join(bits)} ({s['seconds']:.1f}s, {s['io']['gets']} GET, "
                         f"{s['io']['puts']} PUT, ~${s['io']['estimated_cost_usd']:.5f})")
    if r["dry_run"]:
        e = r["estimated"]
        tail = (f"plan of {r['pipeline']!r}: ~{e['bytes_read'] / 1e6:,.1f} MB read, ~{e['bytes_written'] / 1e6:,.1f} MB "
                f"written, {e['gets'] + e['puts'] + e['lists']} requests, ~${e['cost_usd']:.5f} (nothing was changed)")
    else:
        tail = (f"pipeline {r['pipeline']!r}: {r['committed']} step(s) committed, {len(r['steps']) - r['committed']} "
                f"had nothing to do, in {r['seconds']:.1f}s (~${r['io']['estimated_cost_usd']:.5f})")
    return "\n".join([tail, *lines])
