"""``lakevec optimize TABLE``: keep a growing table's IVF index healthy (one commit, or none).

Measures the partition imbalance (largest / mean, share of rows in the 1% largest partitions), drift
(recall@10 at the default nprobe of recently added rows, against exact search) and the share of
unassigned rows. Below the thresholds it does nothing and says so. Past one, it splits the oversized
partitions and merges the tiny ones locally (only their rows and the rows new centroids take over are
rewritten), re-calibrates the default nprobe and commits once. --retrain rebuilds the whole index.
--dry-run measures and plans exactly the same way and writes nothing. The report shows the figures
before and after and the bytes written against the table's bytes.
"""
from __future__ import annotations

import argparse

from . import common

ENGINES = ("local", "ray", "spark")


def register(subparsers) -> None:
    from ..maintenance.optimize import THRESHOLDS
    p = subparsers.add_parser(
        "optimize", help="split/merge drifted IVF partitions of a table (no-op when healthy)",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec optimize docs\n  lakevec optimize docs --dry-run\n"
               "  lakevec --json optimize docs --max-imbalance 3\n  lakevec optimize docs --retrain --engine spark")
    p.add_argument("table", help="table name")
    p.add_argument("--retrain", action="store_true", help="rebuild the whole index (every row rewritten)")
    p.add_argument("--dry-run", action="store_true",
                   help="measure and plan (exact rows and fragments to move); write and commit nothing")
    p.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    p.add_argument("--max-imbalance", type=float, metavar="X",
                   help=f"act when the largest partition exceeds X times the mean (default {THRESHOLDS['max_imbalance']})")
    p.add_argument("--max-top1pct-share", type=float, metavar="F",
                   help="act when the 1%% largest partitions hold more than this share of the rows (tables with 200+ "
                        f"partitions; default {THRESHOLDS['max_top1pct_share']})")
    p.add_argument("--min-recall", type=float, metavar="R",
                   help=f"act when recall@10 of recent rows at the default nprobe is below R "
                        f"(default {THRESHOLDS['min_recall']})")
    p.add_argument("--max-unassigned", type=float, metavar="F",
                   help=f"act when more than this share of rows is unassigned (default {THRESHOLDS['max_unassigned']})")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    common.require_engine(args.engine)
    th = {}
    for k in ("max_imbalance", "max_top1pct_share", "min_recall", "max_unassigned"):
        v = getattr(args, k)
        if v is None:
            continue
        hi = None if k == "max_imbalance" else 1.0
        if not (v >= 0 and (hi is None or v <= hi)):
            raise common.UsageError(f"--{k.replace('_', '-')} must be between 0 and {hi:g}, got {v:g}" if hi else
                                    f"--{k.replace('_', '-')} must not be negative, got {v:g}")
        th[k] = v
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    what = "rebuilding the index of" if args.retrain else "optimizing the index of"
    with common.progress(args, f"{'checking' if args.dry_run else what} {table.name!r}") as step:
        r = common.call_with_progress(table.optimize, step, retrain=args.retrain, dry_run=args.dry_run,
                                      engine=args.engine, **th)
    return {"lake": lake.uri, **r}


def _figures(f: dict | None) -> str:
    if not f:
        return "-"
    rec = f.get("recall_at_default_nprobe") or {}
    parts = [f"{f.get('partitions', '?')} partitions, largest {f.get('largest_over_mean', 0):.2f}x mean"]
    if f.get("top1pct_share") is not None:
        parts.append(f"1% largest hold {f['top1pct_share']:.1%}")
    if f.get("unassigned_share") is not None:
        parts.append(f"unassigned {f['unassigned_share']:.1%}")
    rr = [f"{k} {rec[k]:.3f}" for k in ("recent", "all", "calibrated") if rec.get(k) is not None]
    parts.append(f"nprobe {f.get('default_nprobe', '?')}" + (f": recall@10 {', '.join(rr)}" if rr else ""))
    return "; ".join(parts)


def format_text(r: dict) -> str:
    lines = []
    head = f"{r['table']!r} version {r['version']}"
    if r.get("committed"):
        head += f" -> {r['new_version']}"
    elif r.get("dry_run"):
        head += " (dry run: nothing written)"
    else:
        head += " unchanged"
    lines.append(f"{head}: {r.get('message', '')}")
    if r.get("reasons"):
        lines.append("why: " + "; ".join(r["reasons"]))
    lines.append(f"before: {_figures(r.get('before'))}")
    if r.get("after"):
        lines.append(f"after:  {_figures(r.get('after'))}")
    w = r.get("rewrite")
    if w:
        b = w.get("bytes_written", w.get("bytes_written_estimate"))
        est = "" if "bytes_written" in w else "about "
        lines.append(f"rewrite: {w.get('rows_written', 0):,} rows, {est}{common.fmt_bytes(b)} of "
                     f"{common.fmt_bytes(w.get('table_bytes'))} ({w.get('bytes_share', 0):.1%} of the table)"
                     + (f"; {w['fragments_rewritten']} fragment(s) rewritten, {w['fragments_with_deletions']} with "
                        f"moved rows marked deleted" if "fragments_rewritten" in w else ""))
    pl = r.get("plan")
    if pl:
        lines.append(f"plan: {len(pl['split'])} partition(s) split, {len(pl['merged'])} merged; "
                     f"{pl['partitions_before']} -> {pl['partitions_after']} partitions "
                     f"(target {pl['target_rows']:.0f} rows each)")
    lines.append(f"time: {common.fmt_seconds(r.get('seconds') or 0)}")
    return "\n".join(lines)
