"""``lakevec cache stats|warm|pin|unpin|evict|clear``: the NVMe cache folder shared by lakevec processes.

The cache folder comes from --cache-dir or $LAKEVEC_CACHE_DIR. Its byte budget is --cache-bytes /
$LAKEVEC_CACHE_BYTES, else the budget recorded by the last process that set one, else 8 GiB.
``stats`` and ``clear`` need no lake; ``warm``/``pin`` need the lake (--lake or $LAKEVEC_LAKE) and a
table, ``evict``/``unpin`` need them only to name a table. Costs use S3 Standard list prices unless
$LAKEVEC_PRICES holds a JSON price table, e.g. '{"get_per_1000": 0.0004, "put_per_1000": 0.005}'.
"""
from __future__ import annotations

import argparse

from . import common

ACTIONS = ("stats", "warm", "pin", "unpin", "evict", "clear")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cache", help="inspect and control the NVMe cache (stats, warm, pin, evict, clear)",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lakevec cache stats --cache-dir /nvme/lakevec\n"
               "  lakevec cache warm docs --partitions 3,17,42     # before a scheduled job\n"
               "  lakevec cache pin docs                             # keep the whole table hot\n"
               "  lakevec cache evict docs\n"
               "  lakevec cache clear")
    sub = p.add_subparsers(dest="cache_action", metavar="ACTION")
    helps = {
        "stats": "budget, bytes used, files, per-table bytes, hits/misses and estimated cost",
        "warm": "download partitions of a table into the cache (all by default)",
        "pin": "warm partitions and keep them cached (never evicted by the policy)",
        "unpin": "let the policy evict pinned partitions again",
        "evict": "remove cached files of a table (or of everything)",
        "clear": "empty the cache folder (files, temperatures, pins)",
    }
    for action in ACTIONS:
        sp = sub.add_parser(action, help=helps[action], description=helps[action])
        if action in ("warm", "pin"):
            sp.add_argument("table", help="table name")
        elif action in ("unpin", "evict"):
            sp.add_argument("table", nargs="?", help="table name (default: every table)")
        if action in ("warm", "pin", "unpin", "evict"):
            sp.add_argument("--partitions", metavar="P,P,...", action="append",
                            help="partition ids, comma-separated or repeated (default: all of the table)")
        common.add_lake_options(sp)
        sp.set_defaults(func=run, cache_action=action)
    common.add_lake_options(p)
    p.set_defaults(func=run)


def _partitions(args):
    vals = common.split_list(getattr(args, "partitions", None))
    if vals is None:
        return None
    out = []
    for v in vals:
        try:
            out.append(int(v))
        except ValueError:
            raise common.UsageError(f"--partitions: {v!r} is not a partition id (integers, e.g. 3,17,42)") from None
    return out


def open_cache_dir(args):
    """Return an NvmeCache for the folder named by the options (no lake), or raise UsageError."""
    from ..cache import NvmeCache, prices_from_env

    cache_dir, cache_bytes = common.cache_settings(args)
    if not cache_dir:
        raise common.UsageError(f"no cache folder given: pass --cache-dir DIR or set {common.ENV_CACHE_DIR}")
    return NvmeCache(cache_dir, cache_bytes, prices=prices_from_env())


def open_lake_with_cache(args):
    """Open the lake with the cache folder; without --cache-bytes keep the budget recorded in the folder."""
    from ..lake import Lake

    cache = open_cache_dir(args)
    return Lake(common.lake_uri(args), storage_options=common.storage_options(args), cache_dir=cache.dir,
                cache_bytes=cache.budget, create=False)


def run(args) -> dict:
    action = getattr(args, "cache_action", None)
    if action is None:
        raise common.UsageError(f"lakevec cache: choose an action: {', '.join(ACTIONS)}")
    parts = _partitions(args)
    table = getattr(args, "table", None)
    need_lake = action in ("warm", "pin") or (action in ("evict", "unpin") and table is not None)
    if need_lake:
        lake = open_lake_with_cache(args)
        cache = lake.cache
    else:
        if action in ("evict", "unpin") and parts is not None:
            raise common.UsageError(f"lakevec cache {action}: --partitions needs a TABLE")
        lake = None
        cache = open_cache_dir(args)
    if action == "stats":
        out = cache.stats()
    elif action in ("warm", "pin"):
        label = f"{'pinning' if action == 'pin' else 'warming'} {table!r}" + (f" partitions {parts}" if parts else "")
        with common.progress(args, label):
            out = (cache.pin if action == "pin" else cache.warm)(table, parts)
    elif action == "unpin":
        out = cache.unpin(table, parts)
    elif action == "evict":
        out = cache.evict(table, parts)
    else:
        out = cache.clear()
    if action not in ("stats",):
        out = {"action": action, "cache_dir": cache.dir, **out}
        if table is not None:
            out.setdefault("table", table)
    return out


def format_text(r: dict) -> str:
    fb = common.fmt_bytes
    action = r.get("action", "stats")
    if action == "stats":
        if not r.get("enabled", True):
            return "no cache configured"
        lines = [f"cache {r['cache_dir']}: {fb(r.get('used_bytes'))} used of {fb(r.get('budget_bytes'))} "
                 f"({r.get('files', 0)} files, {r.get('partitions', 0)} partitions; "
                 f"{r.get('pinned_partitions', 0)} pinned, {fb(r.get('pinned_bytes'))})"]
        life = r.get("lifetime") or {}
        if life:
            lines.append(f"all processes: {life['hits']} hits, {life['misses']} misses (hit ratio "
                         f"{life['hit_ratio']:.1%}); {fb(life['bytes_from_cache'])} served from cache, "
                         f"{fb(life['bytes_from_store'])} from the object store")
            lines.append(f"admitted {life['admitted']}, not admitted {life['rejected']}, evicted "
                         f"{life['evicted_files']} files ({fb(life['evicted_bytes'])}), damaged {life['corrupt']}, "
                         f"missing {life['missing']}, write errors {life['write_errors']}")
            lines.append(f"estimated savings from hits: ${r.get('estimated_savings_usd', 0):.6f}")
        for t in r.get("tables") or []:
            lines.append(f"  {t['table']}: {t['partitions']} partitions, {t['files']} files, {fb(t['bytes'])}")
        if r.get("error"):
            lines.append(f"error: {r['error']}")
        return "\n".join(lines)
    if action in ("warm", "pin"):
        text = (f"{'pinned' if action == 'pin' else 'warmed'} {r.get('partitions', 0)} partition(s) of "
                f"{r.get('table')!r}: {r.get('files', 0)} files, {fb(r.get('bytes'))}; downloaded "
                f"{r.get('files_downloaded', 0)} ({fb(r.get('bytes_downloaded'))}), already cached "
                f"{r.get('files_already_cached', 0)}")
        if r.get("skipped_partitions"):
            text += f"\nskipped (over the byte budget): {r['skipped_partitions']}"
        if r.get("note"):
            text += f"\n{r['note']}"
        io = r.get("io") or {}
        if io:
            text += (f"\nobject store: {io.get('gets', 0)} GET/HEAD, {fb(io.get('bytes_read'))}; "
                     f"estimated cost ${io.get('estimated_cost_usd', 0):.6f}; {r.get('seconds', 0)} s")
        return text
    if action == "unpin":
        return f"unpinned {r.get('partitions', 0)} partition(s)"
    return f"{'evicted' if action == 'evict' else 'cleared'} {r.get('files', 0)} files ({fb(r.get('bytes'))}) from {r.get('cache_dir')}"
