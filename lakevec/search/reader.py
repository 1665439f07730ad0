"""Read the rows of fragments/partitions: ids, vectors and row addresses, cache first.

A fragment whose columns sit in one data file and which has no deletions is read straight from
that file (``lance.file.LanceFileReader``): from the lake path on local disk, else the whole object
is fetched with one GET (``ObjectStore.download``) into the NVMe cache (if configured) or a
temporary file. Whole-object reads keep S3 requests at one per file and bytes at exactly the
probed partitions' size. A fragment with a deletion file (rows that ``optimize`` moved out, or that a
delete removed) is read the same way, then its live rows are kept: their offsets come from Lance (a scan of
row addresses only, which reads the deletion file) and are remembered with the decoded file, under the
deletion file's identity. Multi-file fragments (other writers) go through Lance's scanner.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import lance
import numpy as np
import pyarrow as pa

from ..config import ID_COLUMN, VECTOR_COLUMN
from ..snapshot import FragmentInfo
from ..store.lance_io import scan
from ..store.objects import ObjectStore, wrap_io_error


@dataclass
class Block:
    """Rows of one or more fragments, ready to score."""

    ids: pa.Array
    vectors: np.ndarray  # float32 (n, dim), C-contiguous
    rowaddr: np.ndarray  # uint64/int64 row addresses (fragment_id << 32 | offset)
    extra: pa.Table | None = None  # requested columns (only when asked)

    def __len__(self) -> int:
        return len(self.vectors)


def vectors_of(col) -> np.ndarray:
    """Return a zero-copy float32 (n, dim) view of a FixedSizeList<float32> column."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    dim = col.type.list_size
    flat = col.values.slice(col.offset * dim, len(col) * dim)
    return flat.to_numpy(zero_copy_only=False).reshape(len(col), dim)


class FragmentReader:
    """Reads fragments of one dataset version, via the cache when there is one."""

    def __init__(self, ds: lance.LanceDataset, data_uri: str, store: ObjectStore, cache=None,
                 table_key: str = "", memory=None, index_id: str = ""):
        self.ds = ds
        self.data_uri = data_uri.rstrip("/")
        self.store = store
        self.cache = cache  # lakevec.cache.NvmeCache or None
        self.table_key = table_key
        self.local = store.loc.is_local
        self.memory = memory  # search.memcache.BlockCache or None
        self.index_id = index_id  # the index whose partitions the cache counts reads for ("" = none)

    def file_uri(self, frag: FragmentInfo) -> str:
        return f"{self.data_uri}/data/{frag.file}"

    def read(self, frag: FragmentInfo, columns=(ID_COLUMN, VECTOR_COLUMN), partition: int = -1) -> pa.Table:
        """Return ``columns`` of ``frag`` plus ``_rowaddr`` as a pyarrow Table."""
        cols = list(columns)
        if not frag.single_file:
            return self._read_lance(frag, cols)
        uri = self.file_uri(frag)
        key = (uri, tuple(cols))
        tbl = self.memory.get(key) if self.memory is not None else None
        if tbl is None:
            tbl = self._read_uncached(frag, uri, cols, partition)
            if self.memory is not None:
                self.memory.put(key, tbl)
        if frag.has_deletions:
            tbl = tbl.take(self._live_offsets(frag, uri))
        return tbl

    def _live_offsets(self, frag: FragmentInfo, uri: str) -> pa.Array:
        """The offsets (in its data file) of the rows of ``frag`` that its deletion file keeps."""
        key = (uri, "live", frag.deletion)
        if self.memory is not None:
            hit = self.memory.get(key)
            if hit is not None:
                return hit
        t = scan(self.ds, f"reading the deletion file of fragment {frag.fragment_id} of {self.data_uri}",
                 self.store.counters, columns=[], with_row_address=True,
                 fragments=[self.ds.get_fragment(frag.fragment_id)])
        addr = t.column("_rowaddr").to_numpy()
        live = pa.array((addr & np.uint64(0xFFFFFFFF)).astype(np.int64))
        if self.memory is not None:
            self.memory.put(key, live)
        return live

    def _read_uncached(self, frag: FragmentInfo, uri: str, cols: list[str], partition: int) -> pa.Table:
        use_cache = True
        while True:
            copy = self._local_copy(uri, frag, partition, use_cache=use_cache)
            if copy is None:  # no local copy possible (e.g. local disk full): let Lance read the object
                return self._read_lance(frag, cols)
            path, temp = copy
            try:
                tbl = self._read_file(path, cols)
                break
            except Exception as e:
                if self.cache is None or self.local or not use_cache:
                    raise wrap_io_error(e, f"reading fragment {frag.fragment_id} ({uri})") from e
                # The copy came through the cache folder (a cached file, or a download into its tmp/), which
                # can be deleted or damaged under us: a lost cache makes reads slower, never failing. Drop
                # the cached copy and read the object from the store into a private temporary file.
                if not temp:
                    self.cache.invalidate(uri)
                use_cache = False
            finally:
                if temp:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
        base = np.uint64(frag.fragment_id) << np.uint64(32)
        addr = base + np.arange(tbl.num_rows, dtype=np.uint64)
        return tbl.append_column("_rowaddr", pa.array(addr))

    @staticmethod
    def _read_file(path: str, cols: list[str]) -> pa.Table:
        reader = lance.file.LanceFileReader(path, columns=cols)
        return reader.read_all(batch_size=1 << 20).to_table()

    def _local_copy(self, uri: str, frag: FragmentInfo, partition: int,
                    use_cache: bool = True) -> tuple[str, bool] | None:
        """Return (local path of the file's bytes, whether it is a temporary file to delete), or None
        when no local copy can be made (the caller then reads through Lance)."""
        if self.local:
            self.store.counters.add(gets=1, bytes_read=frag.file_size)
            return uri, False
        if self.cache is not None and use_cache:
            # (path, is_temp) of a verified copy, or None when the cache cannot be used right now
            got = self.cache.fetch(uri, frag.file_size, self.store, self.table_key, partition, self.index_id)
            if got is not None:
                return got
        try:
            fd, tmp = tempfile.mkstemp(prefix="lakevec-frag-", suffix=".lance")
            os.close(fd)
        except OSError:
            return None
        try:
            self.store.download(uri, tmp)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, Exception) and _local_disk_error(e):
                return None
            raise
        return tmp, True

    def _read_lance(self, frag: FragmentInfo, cols: list[str]) -> pa.Table:
        fr = self.ds.get_fragment(frag.fragment_id)
        return scan(self.ds, f"reading fragment {frag.fragment_id} of {self.data_uri}", self.store.counters,
                    columns=cols, with_row_address=True, fragments=[fr])

    def read_block(self, frags: list[FragmentInfo], partition: int = -1, mask_for=None) -> Block | None:
        """Read and concatenate fragments into one Block; ``mask_for(frag)`` gives a row mask or None."""
        parts = []
        for f in frags:
            t = self.read(f, partition=partition)
            if mask_for is not None:
                m = mask_for(f, t)
                if m is not None:
                    t = t.filter(pa.array(m))
            if t.num_rows:
                parts.append(t)
        if not parts:
            return None
        t = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        ids = t.column(ID_COLUMN)
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        addr = t.column("_rowaddr").to_numpy()
        vec = vectors_of(t.column(VECTOR_COLUMN))
        if not vec.flags.c_contiguous or vec.dtype != np.float32:
            vec = np.ascontiguousarray(vec, dtype=np.float32)
        return Block(ids, vec, addr)


def _local_disk_error(e: BaseException) -> bool:
    """Return True if ``e`` was caused by the local disk (full, read-only...), not by the store."""
    import errno
    for _ in range(5):
        if e is None:
            return False
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            return True
        e = e.__cause__ or e.__context__
    return False


def take_columns(ds: lance.LanceDataset, rowaddr: np.ndarray, columns: list[str]) -> pa.Table:
    """Return ``columns`` for the given row addresses, in that order."""
    if len(rowaddr) == 0:
        return ds.schema.empty_table().select(columns)
    uniq, inv = np.unique(rowaddr.astype(np.uint64), return_inverse=True)
    try:
        t = ds._take_rows(uniq.tolist(), columns=columns)
    except Exception as e:
        raise wrap_io_error(e, f"fetching columns {columns} from {ds.uri}") from e
    return t.take(pa.array(inv))
