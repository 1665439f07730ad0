"""A read view of one table version: its fragments, their partitions and the index that covers them."""
from __future__ import annotations

from dataclasses import dataclass, field

import lance
import numpy as np

from .config import UNASSIGNED
from .index.ivf import IvfModel
from .metadata import IndexMeta, TableFiles
from .state import TableState
from .store.lance_io import file_path


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
    deletion: str = ""  # identity of its deletion file ("<read_version>-<id>"), "" without one


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
    state: TableState | None = None  # the lakevec state of this version

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


def build_snapshot(ds: lance.LanceDataset, state: TableState, files: TableFiles) -> Snapshot:
    """Return the Snapshot of dataset version ``ds``: the index in force and the partition of every fragment
    come from the version's lakevec state (``lakevec.state``), never from vectors or a listing."""
    infos = []
    for fr in ds.get_fragments():
        md = fr.metadata
        df = md.files[0] if md.files else None
        part = state.partition_of(file_path(df)) if df is not None else None
        deleted = md.deletion_file is not None
        n = md.physical_rows
        if deleted:
            n = md.num_rows if hasattr(md, "num_rows") else fr.count_rows()
        dv = f"{md.deletion_file.read_version}-{md.deletion_file.id}" if deleted else ""
        infos.append(FragmentInfo(md.id, file_path(df) if df else "", int(df.file_size_bytes or 0) if df else 0,
                                  int(n), UNASSIGNED if part is None else int(part), deleted, len(md.files) == 1,
                                  dv))
    snap = Snapshot(ds, ds.version, infos, state=state)
    if state.index is not None:
        snap.index = state.index
        snap.model = IvfModel(files.centroids(state.index.index_id), state.index.metric)
        for f in infos:
            (snap.by_partition.setdefault(f.partition, []) if f.partition != UNASSIGNED
             else snap.unassigned).append(f)
    else:
        snap.unassigned = list(infos)
    return snap
