"""The hot tier: byte-identical copies of immutable lake objects on local NVMe, per IVF partition.

``lakevec.connect(uri, cache_dir=DIR, cache_bytes=N)`` gives the lake an :class:`NvmeCache`
(``lake.cache``); without ``cache_dir`` it is a :class:`DisabledCache` that only keeps the counters.

What is cached
    The data files of partitions (every fragment of an indexed table holds exactly one partition),
    keyed by their object URI. Object names are immutable UUIDs, so a copy is never stale; a file of
    an old version stays valid for time travel. A fragment with a deletion file is cached the same way
    (its data file never changes; the reader keeps its live rows). Multi-file fragments (written by
    other tools) are read by Lance's scanner and not cached. Index centroids and partition maps stay in
    memory (``TableFiles``).

Units
    Statistics, pins, admission and eviction work on units: one partition of one index of one table,
    ``(table root URI, index id, partition)``. A new index reuses partition numbers for unrelated
    clusters, so nothing of the old index's units (temperature, pins) applies to the new one; they
    cool down and are evicted first, and ``warm``/``pin`` of the table release the old index's pins.
    Unassigned fragments (rows appended after the index, or of an unindexed table) form the
    pseudo-partition -1, with no index id. The reader passes the index id of the snapshot it reads.

Layering
    The cache sits under tables: it never imports or opens a table itself. ``warm``/``pin``/``evict``
    take Table objects (duck-typed: ``snapshot()``, ``loc``, ``data_uri``, ``store``); table names are
    resolved by the ``open_table`` callable and ``root`` URI that the lake hands to ``open_cache``.

Read path (``search.reader.FragmentReader`` -> ``NvmeCache.fetch``)
    Hit: the recorded size is compared with the file, and its CRC-32 (recorded at admission) is
    checked before use: on the first use by each process and whenever the file's identity (inode,
    size, mtime, ctime) changed since it was last verified -- any write, truncation or replacement
    changes it. ``verify="always"`` (``$LAKEVEC_CACHE_VERIFY=always``, or ``lake.cache.verify = "always"``)
    checks the checksum on every use, at the price of reading every cached file once more per use. A missing, truncated or damaged
    file is dropped and the object is read again from the store; if the reader fails on a copy that
    passed the checks, it calls ``invalidate`` and re-reads from the store.
    Miss: one HEAD plus one ranged GET per 64 MB stream the object into ``tmp/``, computing its
    CRC-32 on the way (counted on the lake's ``IOCounters``); then, in one database transaction, the
    access is recorded, admission is decided, victims are evicted and the file is published with
    ``os.replace``. A file not admitted is handed to the reader as a temporary file it deletes.
    Hits are buffered in memory (up to 256 or 2 s) and written by the process's next transaction,
    which takes them only once it holds the database: an admission decision sees every access this
    process recorded before it, whichever thread recorded it.

Policy (``policy``)
    Per partition, a decayed access score (half-life one hour) weighs frequency and recency. Free
    budget admits anything; a full cache admits a partition only if it is hotter than every partition
    it would evict (scan resistance: one large scan touches each partition once and cannot flush a
    repeatedly-read hot set). Victims are whole partitions, coldest first; pinned ones never.
    ``warm(table, partitions=None)`` downloads ahead of a scheduled job, ``pin``/``unpin`` protect
    partitions, ``evict(table=None, partitions=None)`` and ``clear()`` remove.

Several processes, one folder
    Metadata lives in ``cache.db``, SQLite in WAL mode; admission (used bytes, victims, insert) is one
    ``BEGIN IMMEDIATE`` transaction, so the budget holds across processes. Files are written under
    ``tmp/`` and published by atomic rename inside that transaction, so no reader sees a torn file and
    a row always names a complete file. Deleting a file that another process is reading is harmless
    (POSIX keeps an open file's bytes; a reader that has not opened it yet gets an error and re-reads
    from the store).

Failure is slowness, never wrongness
    Disk full, cache folder deleted, database unreadable: ``fetch`` returns None and the reader reads
    from the object store (after a local write failure the folder is skipped for 10 s); the folder and
    database are recreated on the next use. Orphan files (a crash between download and publish, a
    lost database) are removed by ``sweep`` when the cache is opened.

Accounting
    Hits, misses and bytes served from the cache go to the lake's ``IOCounters`` (per process; every
    search's ``stats["io"]`` carries its own delta), and per partition into the database (lifetime,
    all processes). ``stats()`` reports both with an estimated cost from ``CacheConfig.prices``
    (``lakevec.config.PriceTable``: S3 Standard list prices by default), overridden by the JSON in
    ``$LAKEVEC_PRICES`` or by setting ``lake.cache.prices``.
"""
from __future__ import annotations

from .nvme import DisabledCache, NvmeCache

__all__ = ["DisabledCache", "NvmeCache", "open_cache", "prices_from_env"]


PRICES_ENV = "LAKEVEC_PRICES"
VERIFY_ENV = "LAKEVEC_CACHE_VERIFY"  # "changed" (default) or "always"


def prices_from_env(default=None):
    """Return the PriceTable of ``$LAKEVEC_PRICES`` (JSON with PriceTable fields, e.g.
    ``{"get_per_1000": 0.0004, "put_per_1000": 0.005}``; missing fields keep their defaults), or ``default``."""
    import dataclasses
    import json
    import os

    from ..config import PriceTable
    from ..errors import InvalidArgumentError

    raw = os.environ.get(PRICES_ENV)
    if not raw:
        return default
    names = {f.name for f in dataclasses.fields(PriceTable)}
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or set(body) - names:
            raise ValueError(f"expected a JSON object with keys among {sorted(names)}")
        return PriceTable(**{k: float(v) for k, v in body.items()})
    except (ValueError, TypeError) as e:
        raise InvalidArgumentError(f"${PRICES_ENV} is not a valid price table: {e}") from None


def open_cache(lake):
    """Return the cache of ``lake``: an NvmeCache when it has a ``cache_dir``, else a DisabledCache.

    Prices: ``lake.cache_config.prices``, overridden by ``$LAKEVEC_PRICES``; zero for a lake on local disk
    (unless ``$LAKEVEC_PRICES`` is set); change them later with ``lake.cache.prices = PriceTable(...)``.
    """
    import os
    cfg = lake.cache_config
    counters = lake.store.counters
    prices = prices_from_env(cfg.prices)
    if lake.store.loc.is_local and not os.environ.get(PRICES_ENV):
        from ..config import PriceTable
        prices = PriceTable(0.0, 0.0, 0.0, 0.0)  # a lake on local disk pays for no request
    if not cfg.cache_dir:
        return DisabledCache(counters, prices)
    verify = os.environ.get(VERIFY_ENV) or "changed"
    # the lake hands over its root and how to open a table by name: the cache never opens one itself
    return NvmeCache(cfg.cache_dir, int(cfg.cache_bytes), root=lake.loc.uri, open_table=lake.open_table,
                     counters=counters, prices=prices, verify=verify)
