"""A read view of one table version: its fragments, their partitions and the index that covers them."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import lance
import numpy as np

from .config import UNASSIGNED
from .index.ivf import IvfModel
from .metadata import IndexMeta, TableFiles


@dataclass(frozen=True)
class FragmentInfo:
    """One data fragment: id, data file (relative to data.lance/data), size, rows, partition."""

    fragment_id: int
    file: str
    file_size: int
    num_rows: int
    partition: int = UNASSIGNED
    has_deletions: bool = False
    single_file: bool = True  # all columns in one data file (our writers always do this)


@dataclass
class Snapshot:
    """Everything a reader needs about version ``version`` of a table, without reading vectors."""

    ds: lance.LanceDataset
    version: int
    fragments: list[FragmentInfo]
    index: IndexMeta | None = None
    model: IvfModel | None = None
    by_partition: dict[int, list[FragmentInfo]] = field(default_factory=dict)
    unassigned: list[FragmentInfo] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.fragments)

    def partition_rows(self) -> np.ndarray:
        """Return the row count of every partition (len = nlist)."""
        n = self.model.nlist if self.model else 0
        out = np.zeros(n, dtype=np.int64)
        for p, frs in self.by_partition.items():
            out[p] = sum(f.num_rows for f in frs)
        return out

    def partition_bytes(self, p: int) -> int:
        return sum(f.file_size for f in self.by_partition.get(p, []))


def build_snapshot(ds: lance.LanceDataset, files: TableFiles) -> Snapshot:
    """Return the Snapshot of dataset version ``ds`` using the partition-map sidecars."""
    frags = []
    for fr in ds.get_fragments():
        md = fr.metadata
        dfs = md.files
        first = dfs[0] if dfs else None
        frags.append((md, first))
    partmap = files.load_partmaps() if frags else {}
    # The index in force is the one whose partition maps cover most rows of this version.
    rows_by_index: dict[str, int] = defaultdict(int)
    for md, df in frags:
        hit = partmap.get(df.path) if df is not None else None
        if hit is not None:
            rows_by_index[hit[0]] += md.physical_rows
    index_id = max(rows_by_index, key=rows_by_index.get) if rows_by_index else None
    infos = []
    for md, df in frags:
        hit = partmap.get(df.path) if df is not None else None
        part = hit[1] if hit is not None and hit[0] == index_id else UNASSIGNED
        deleted = md.deletion_file is not None
        n = md.physical_rows
        if deleted:
            n = md.num_rows if hasattr(md, "num_rows") else n
        infos.append(FragmentInfo(md.id, df.path if df else "", int(df.file_size_bytes or 0) if df else 0,
                                  int(n), part, deleted, len(md.files) == 1))
    snap = Snapshot(ds, ds.version, infos)
    if index_id is not None:
        meta, cents = files.read_index(index_id)
        snap.index = meta
        snap.model = IvfModel(cents, meta.metric)
        for f in infos:
            (snap.by_partition.setdefault(f.partition, []) if f.partition != UNASSIGNED
             else snap.unassigned).append(f)
    else:
        snap.unassigned = list(infos)
    return snap
