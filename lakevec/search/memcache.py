"""An in-process LRU of decoded fragment columns, for repeated searches from one process (notebooks).

Keys are data-file URIs plus the column list; data files are immutable (UUID names), so an entry is
never stale. The byte budget is small by default (``MEMORY_CACHE_BYTES``): the tier that holds whole
hot partitions is the NVMe cache; this one only saves decoding and system calls for the hottest.
The LRU itself is ``cachetools.LRUCache`` sized in bytes (``getsizeof`` = the table's ``nbytes``).
"""
from __future__ import annotations

import threading

import pyarrow as pa
from cachetools import LRUCache


def _nbytes(table: pa.Table) -> int:
    return table.nbytes


class BlockCache:
    """Thread-safe LRU of pyarrow Tables within a byte budget (0 disables it).

    An entry bigger than a quarter of the budget is not kept (one large partition must not flush the
    rest); inserting evicts the least recently used entries until the new one fits.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._lru = LRUCache(maxsize=max(1, self.max_bytes), getsizeof=_nbytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key) -> pa.Table | None:
        """Return the cached table for ``key`` (and mark it recently used), or None."""
        if not self.max_bytes:
            return None
        with self._lock:
            t = self._lru.get(key)
            if t is None:
                self.misses += 1
            else:
                self.hits += 1
            return t

    def put(self, key, table: pa.Table) -> None:
        """Remember ``table`` under ``key``, evicting least recently used entries to fit the budget."""
        if not self.max_bytes or table.nbytes > self.max_bytes // 4:
            return
        with self._lock:
            if key not in self._lru:
                self._lru[key] = table

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()

    def stats(self) -> dict:
        with self._lock:
            return {"max_bytes": self.max_bytes, "used_bytes": int(self._lru.currsize), "entries": len(self._lru),
                    "hits": self.hits, "misses": self.misses}
