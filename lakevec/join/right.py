"""The right table of a join, pinned to the join's version, opened once per worker process."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ..search.reader import FragmentReader



@dataclass(frozen=True)
class RightSpec:
    """How a worker opens the right table at the join's version."""

    lake_uri: str
    table: str
    version: int
    storage_options: dict | None = field(default=None, repr=False)
    cache_dir: str | None = None
    cache_bytes: int | None = None

    def key(self) -> tuple:
        return (self.lake_uri, self.table, self.version, self.cache_dir, os.getpid())


_RIGHT: OrderedDict = OrderedDict()
_RIGHT_LOCK = threading.Lock()


def register_right(spec: RightSpec, table) -> None:
    """Let tasks running in this process use ``table`` (the driver's pinned view: its lake, cache)."""
    with _RIGHT_LOCK:
        _RIGHT[spec.key()] = _RightState(table)
        while len(_RIGHT) > 4:
            _RIGHT.popitem(last=False)


def unregister_right(spec: RightSpec) -> None:
    with _RIGHT_LOCK:
        _RIGHT.pop(spec.key(), None)


class _RightState:
    def __init__(self, table):
        self.table = table
        self.snap = table.snapshot()
        self.reader = FragmentReader(self.snap.ds, table.data_uri, table.store, table.lake.cache, table.name,
                                     memory=None, index_id=self.snap.index.index_id if self.snap.index else "")


def right_state(spec: RightSpec) -> _RightState:
    with _RIGHT_LOCK:
        st = _RIGHT.get(spec.key())
        if st is not None:
            _RIGHT.move_to_end(spec.key())
            return st
    from ..lake import Lake
    lake = Lake(spec.lake_uri, spec.storage_options, spec.cache_dir, spec.cache_bytes, create=False,
                memory_cache_bytes=0)
    table = lake.open_table(spec.table).checkout(spec.version)
    st = _RightState(table)
    register_right(spec, table)
    return st


