"""``Table.stats()``: partitions with rows, bytes, temperature and tier; bytes per tier; counters; cost."""
from __future__ import annotations

import time

from ..config import PriceTable
from .policy import tier_of

GIB = 1 << 30


def table_stats(table, partitions: bool = True) -> dict:
    """Return the statistics of ``table`` (see ``Table.stats``)."""
    t0 = time.time()
    lake = table.lake
    cache = lake.cache
    prices: PriceTable = getattr(cache, "prices", None) or lake.cache_config.prices
    snap = table.snapshot()
    tbl = table.loc.uri
    index_id = snap.index.index_id if snap.index else ""
    local = table.store.loc.is_local
    cached = cache.cached_by_partition(tbl, index_id) if not local else {}
    pstats = cache.partition_stats(tbl, index_id) if getattr(cache, "enabled", False) else {}
    cached_keys = {k: s for d in cached.values() for k, s in d.items()}

    groups = {p: frs for p, frs in snap.by_partition.items()}
    if snap.unassigned:
        groups[-1] = list(snap.unassigned)
    nlist = snap.model.nlist if snap.model is not None else 0
    rows_out = []
    total_bytes = hot_bytes = 0
    tiers = {"hot": 0, "partial": 0, "cold": 0}
    for p in sorted(set(groups) | set(range(nlist))):
        frs = groups.get(p, [])
        nbytes = sum(f.file_size for f in frs)
        hot = sum(cached_keys.get(f"{table.data_uri}/data/{f.file}", 0) for f in frs)
        total_bytes += nbytes
        hot_bytes += hot
        tier = "local" if local else (tier_of(hot, nbytes) if nbytes else "empty")
        if tier in tiers:
            tiers[tier] += 1
        ps = pstats.get(p, {})
        rows_out.append({
            "partition": p, "rows": sum(f.num_rows for f in frs), "bytes": nbytes, "fragments": len(frs),
            "tier": tier, "cached_bytes": hot, "temperature": ps.get("temperature", 0.0),
            "pinned": ps.get("pinned", False), "hits": ps.get("hits", 0), "misses": ps.get("misses", 0),
        })
    life = {k: sum(v.get(k, 0) for v in pstats.values()) for k in ("accesses", "hits", "misses", "bytes_cache",
                                                                   "bytes_store")}
    proc = table.store.counters.snapshot()
    out = {
        "table": table.name,
        "lake": lake.uri,
        "version": snap.version,
        "rows": snap.num_rows,
        "dim": table.meta.dim,
        "metric": table.meta.metric,
        "index_id": snap.index.index_id if snap.index else None,
        "num_partitions": nlist,
        "fragments": len(snap.fragments),
        "unassigned_rows": sum(f.num_rows for f in snap.unassigned),
        "bytes": total_bytes,
        "bytes_per_tier": ({"local_disk": total_bytes, "nvme_cache": 0} if local else
                           {"object_store": total_bytes, "nvme_cache": hot_bytes}),
        "partitions_per_tier": tiers,
        "cache": {"enabled": bool(getattr(cache, "enabled", False)), "dir": getattr(cache, "dir", None),
                  **life, "hit_ratio": round(life["hits"] / (life["hits"] + life["misses"]), 4)
                  if life["hits"] + life["misses"] else 0.0},
        "counters": proc.to_dict(prices),
        "last_search": (table.last_search_stats or {}).get("io"),
        "estimated_cost_usd": proc.cost(prices),
        "storage_cost_usd_month": round(total_bytes / GIB * prices.storage_gb_month, 6),
        "seconds": round(time.time() - t0, 3),
    }
    if partitions:
        out["partitions"] = rows_out
    return out
