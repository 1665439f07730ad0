"""An in-process LRU of decoded fragment columns, for repeated searches from one process (notebooks).

Keys are data-file URIs plus the column list; data files are immutable (UUID names), so an entry is
never stale. The byte budget is small by default (``MEMORY_CACHE_BYTES``): the tier that holds whole
hot partitions is the NVMe cache; this one only saves decoding and system calls for the hottest.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import pyarrow as pa


class BlockCache:
    """Thread-safe LRU of pyarrow Tables within a byte budget (0 disables it)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self._d: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key) -> pa.Table | None:
        """Return the cached table for ``key`` (and mark it recently used), or None."""
        if not self.max_bytes:
            return None
        with self._lock:
            t = self._d.get(key)
            if t is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return t

    def put(self, key, table: pa.Table) -> None:
        """Remember ``table`` under ``key``, evicting least recently used entries to fit the budget."""
        size = table.nbytes
        if not self.max_bytes or size > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._d:
                return
            self._d[key] = table
            self._bytes += size
            while self._bytes > self.max_bytes and self._d:
                _, old = self._d.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return {"max_bytes": self.max_bytes, "used_bytes": self._bytes, "entries": len(self._d),
                    "hits": self.hits, "misses": self.misses}
