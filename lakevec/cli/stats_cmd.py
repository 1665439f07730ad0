"""``lakevec stats TABLE``: rows, bytes per tier, and per IVF partition rows, bytes, temperature, tier.

Tiers: every byte is in the object store (the source of truth); ``hot`` partitions also have all
their files in the NVMe cache (--cache-dir / $LAKEVEC_CACHE_DIR), ``partial`` some. Temperature is
the partition's decayed access count (half-life one hour) over all processes sharing the cache.
Also shows cache hits/misses of the table and the I/O this command made, with an estimated cost.
"""
from __future__ import annotations

import argparse

from . import common


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stats", help="table statistics: partitions with sizes and temperatures, bytes per tier",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lakevec stats docs --cache-dir /nvme/lakevec\n  lakevec --json stats docs")
    p.add_argument("table", help="table name")
    p.add_argument("--top", type=int, default=20, metavar="N",
                   help="partitions listed in the readable output, hottest first (default 20; 0: all)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def run(args) -> dict:
    cache_dir, _ = common.cache_settings(args)
    if cache_dir:
        from .cache_cmd import open_lake_with_cache
        lake = open_lake_with_cache(args)
    else:
        lake = common.open_lake(args)
    table = lake.open_table(args.table)
    with common.progress(args, f"reading statistics of {table.name!r}"):
        out = table.stats()
    out["top"] = args.top
    return out


def format_text(r: dict) -> str:
    fb = common.fmt_bytes
    tiers = r.get("bytes_per_tier", {})
    tier_text = ", ".join(f"{k.replace('_', ' ')} {fb(v)}" for k, v in tiers.items())
    pt = r.get("partitions_per_tier", {})
    lines = [
        f"table {r['table']!r} at version {r['version']}: {r['rows']:,} rows, dim {r['dim']}, metric {r['metric']}, "
        f"{r['fragments']} fragments, {fb(r['bytes'])}",
        f"index: {r['index_id'] or 'none'}" + (f", {r['num_partitions']} partitions "
                                                f"(hot {pt.get('hot', 0)}, partial {pt.get('partial', 0)}, "
                                                f"cold {pt.get('cold', 0)})" if r.get("index_id") else "")
        + (f"; {r['unassigned_rows']:,} unassigned rows" if r.get("unassigned_rows") else ""),
        f"bytes per tier: {tier_text}",
    ]
    c = r.get("cache") or {}
    if c.get("enabled"):
        lines.append(f"cache {c['dir']}: {c['hits']} hits, {c['misses']} misses (hit ratio {c['hit_ratio']:.1%}), "
                     f"{fb(c['bytes_cache'])} served from cache, {fb(c['bytes_store'])} from the object store")
    else:
        lines.append("cache: none configured (--cache-dir)")
    io = r.get("counters") or {}
    lines.append(f"this command: {io.get('gets', 0)} GET/HEAD, {io.get('lists', 0)} LIST, {fb(io.get('bytes_read'))} read; "
                 f"estimated cost ${io.get('estimated_cost_usd', 0):.6f}; storage ~${r.get('storage_cost_usd_month', 0):.4f}/month")
    parts = r.get("partitions") or []
    if parts:
        top = r.get("top", 20)
        shown = sorted(parts, key=lambda p: (-p["temperature"], p["partition"]))
        if top:
            shown = shown[:top]
        rows = [{"partition": p["partition"], "rows": p["rows"], "bytes": fb(p["bytes"]), "tier": p["tier"],
                 "temperature": round(p["temperature"], 3), "pinned": "yes" if p["pinned"] else "",
                 "hits": p["hits"], "misses": p["misses"]} for p in shown]
        from .main import format_rows
        title = "partitions, hottest first" + (f" (top {len(shown)} of {len(parts)})" if top and len(parts) > top else "")
        lines.append(title + ":")
        lines += ["  " + line for line in format_rows(rows).splitlines()]
    return "\n".join(lines)
