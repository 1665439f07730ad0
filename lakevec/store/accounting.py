"""Request and byte accounting: object-store GET/PUT/LIST and bytes, cache hits and bytes.

Every Store owns an ``IOCounters``; operations snapshot it before and after to report their own
counts (``delta``). Lance's own reads are added from ``LanceDataset.io_stats_incremental()``.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields

from ..config import PriceTable


@dataclass
class IOSnapshot:
    """A point-in-time copy of the counters (plain numbers, picklable, JSON-able)."""

    gets: int = 0
    puts: int = 0
    lists: int = 0
    deletes: int = 0
    bytes_read: int = 0  # from the object store (or local lake files)
    bytes_written: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_bytes_read: int = 0  # served from the NVMe cache

    def __sub__(self, other: "IOSnapshot") -> "IOSnapshot":
        return IOSnapshot(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __add__(self, other: "IOSnapshot") -> "IOSnapshot":
        return IOSnapshot(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def hit_ratio(self) -> float:
        """Return cache hits / (hits + misses), 0 when nothing was looked up."""
        n = self.cache_hits + self.cache_misses
        return self.cache_hits / n if n else 0.0

    def cost(self, prices: PriceTable | None = None) -> float:
        """Return the estimated USD cost of these requests."""
        p = prices or PriceTable()
        return p.cost(gets=self.gets, puts=self.puts, lists=self.lists)

    def to_dict(self, prices: PriceTable | None = None) -> dict:
        """Return the counters plus hit ratio and estimated cost as a dict."""
        d = asdict(self)
        d["cache_hit_ratio"] = round(self.hit_ratio, 4)
        d["estimated_cost_usd"] = self.cost(prices)
        return d


class IOCounters:
    """Thread-safe counters of object-store requests, bytes and cache traffic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = IOSnapshot()

    def add(self, **kw: int) -> None:
        """Add to the named counters (e.g. ``add(gets=1, bytes_read=n)``)."""
        with self._lock:
            for k, v in kw.items():
                setattr(self._s, k, getattr(self._s, k) + int(v))

    def add_lance_stats(self, stats) -> None:
        """Add a Lance ``IOStats`` (read_iops/read_bytes/write_iops/write_bytes)."""
        if stats is None:
            return
        self.add(
            gets=getattr(stats, "read_iops", 0),
            bytes_read=getattr(stats, "read_bytes", 0),
            puts=getattr(stats, "write_iops", 0),
            bytes_written=getattr(stats, "write_bytes", 0),
        )

    def snapshot(self) -> IOSnapshot:
        """Return a copy of the current counts."""
        with self._lock:
            return IOSnapshot(**asdict(self._s))
