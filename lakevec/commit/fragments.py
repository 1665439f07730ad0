"""Write rows as Lance fragment files (not committed): one partition per fragment once indexed.

Workers (ingest, index build, compaction) call ``FragmentSink``; the driver commits the returned fragment
metadata once through ``lakevec.commit.protocol``. Rows of an
indexed table are assigned to their nearest centroid and every fragment holds one partition
(partition purity); buffers are flushed when they reach a byte budget, so memory stays bounded.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from lance.fragment import write_fragments

from ..config import ID_COLUMN, MAX_ROWS_PER_FILE, PARTITION_COLUMN, UNASSIGNED
from ..errors import LakevecError
from ..index.ivf import IvfModel
from ..store.lance_io import file_path
from ..store.objects import ObjectStore, wrap_io_error

FLUSH_BYTES = 256 << 20  # buffered bytes that trigger a write (bounds worker memory)
WRITE_THREADS = 16  # concurrent fragment writes (per-partition files are small: latency-bound)


@dataclass
class WrittenFiles:
    """Fragments written by one task: Lance metadata plus the partition of each data file."""

    fragments: list = field(default_factory=list)  # lance FragmentMetadata (picklable dataclasses)
    partitions: dict = field(default_factory=dict)  # data file name -> partition
    rows: int = 0
    bytes: int = 0

    def add(self, frags, partition: int) -> None:
        """Record fragments just written, all of ``partition``."""
        for f in frags:
            for df in f.files:
                self.partitions[file_path(df)] = partition
                self.bytes += int(df.file_size_bytes or 0)
            self.rows += f.physical_rows
        self.fragments += frags

    def extend(self, other: "WrittenFiles") -> None:
        self.fragments += other.fragments
        self.partitions.update(other.partitions)
        self.rows += other.rows
        self.bytes += other.bytes


class FragmentSink:
    """Buffers validated batches and writes them as fragments (one partition each when indexed)."""

    def __init__(self, data_uri: str, schema: pa.Schema, storage_options: dict | None,
                 model: IvfModel | None = None, mode: str = "append", collect_ids: bool = False, dataset=None,
                 max_rows_per_file: int = MAX_ROWS_PER_FILE, flush_bytes: int = FLUSH_BYTES):
        self.data_uri = data_uri
        self.schema = schema
        self.storage_options = storage_options
        self.model = model
        self.mode = mode  # "overwrite": fragments for a new schema (the first rows of a table set its columns)
        self._ids: list | None = [] if collect_ids else None  # id arrays of the rows added (ingestion)
        self.max_rows_per_file = max_rows_per_file
        self.flush_bytes = flush_bytes
        self.out = WrittenFiles()
        self._buf: dict[int, list[pa.RecordBatch]] = {}
        self._buf_bytes = 0
        self._ds = dataset  # the opened dataset to write into (appends); opened on first use when None
        self._lock = threading.Lock()

    def add(self, batch: pa.RecordBatch, vectors: np.ndarray | None = None,
            partitions: np.ndarray | None = None) -> None:
        """Buffer a validated batch (canonical columns, no _partition); write when the buffer is full."""
        if batch is None or batch.num_rows == 0:
            return
        if self._ids is not None:
            self._ids.append(batch.column(batch.schema.get_field_index(ID_COLUMN)))
        if partitions is None:
            if self.model is not None:
                partitions = self.model.assign(vectors)
            else:
                partitions = np.full(batch.num_rows, UNASSIGNED, dtype=np.int32)
        batch = batch.append_column(PARTITION_COLUMN, pa.array(partitions.astype(np.int32)))
        batch = _conform(batch, self.schema)
        if self.model is None:
            self._buf.setdefault(UNASSIGNED, []).append(batch)
        else:
            order = np.argsort(partitions, kind="stable")
            sorted_parts = partitions[order]
            cuts = np.flatnonzero(np.diff(sorted_parts)) + 1
            sb = batch.take(pa.array(order))
            start = 0
            for end in list(cuts) + [len(order)]:
                p = int(sorted_parts[start])
                self._buf.setdefault(p, []).append(sb.slice(start, end - start))
                start = end
        self._buf_bytes += batch.nbytes
        if self.model is None:
            rows = sum(b.num_rows for b in self._buf.get(UNASSIGNED, []))
            if rows >= self.max_rows_per_file or self._buf_bytes >= self.flush_bytes:
                self.flush()
        elif self._buf_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Write every buffered partition as fragment file(s), several partitions at a time."""
        jobs = [(p, pa.Table.from_batches(b, schema=self.schema)) for p, b in sorted(self._buf.items()) if b]
        self._buf = {}
        self._buf_bytes = 0
        if not jobs:
            return
        if len(jobs) == 1 or WRITE_THREADS <= 1:
            results = [self._write(p, t) for p, t in jobs]
        else:
            # Many small per-partition files: overlap their object-store round trips.
            with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="lakevec-write") as pool:
                futs = [pool.submit(self._write, p, t) for p, t in jobs]
                results = []
                err = None
                for f in futs:
                    try:
                        results.append(f.result())
                    except BaseException as e:  # keep what was written so abort() can delete it
                        err = err or e
                if err is not None:
                    for p, frags in results:
                        self._record(p, frags)
                    raise err
        for p, frags in results:
            self._record(p, frags)

    def _target(self):
        """Return what write_fragments writes into: the opened dataset when appending (opened once per
        sink: with a URI every call re-opens the dataset, ~3x the cost of a small write on S3)."""
        if self.mode != "append":
            return self.data_uri
        with self._lock:
            if self._ds is None:
                from ..store.lance_io import open_dataset
                self._ds = open_dataset(self.data_uri, self.storage_options)
            return self._ds

    def _write(self, p: int, tbl: pa.Table):
        try:
            return p, write_fragments(tbl, self._target(), schema=self.schema, mode=self.mode,
                                      max_rows_per_file=self.max_rows_per_file,
                                      storage_options=self.storage_options)
        except LakevecError:
            raise
        except Exception as e:
            raise wrap_io_error(e, f"writing fragments to {self.data_uri}") from e

    def ids(self):
        """Return the ids of every row added (int64 array, or object array of strings); needs collect_ids."""
        if not self._ids:
            return np.empty(0, dtype=np.int64)
        arr = pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in self._ids])
        out = arr.to_numpy(zero_copy_only=False)
        return out.astype(np.int64) if out.dtype.kind in "iu" else np.asarray(out, dtype=object)

    def write_table(self, tbl: pa.Table, partition: int) -> list:
        """Write ``tbl`` (rows of one partition, in the sink's schema) now; return its fragments."""
        _, frags = self._write(partition, tbl)
        self._record(partition, frags)
        return frags

    def _record(self, p: int, frags) -> None:
        self.out.add(frags, p)

    def finish(self) -> WrittenFiles:
        """Flush and return what was written."""
        self.flush()
        return self.out


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Return ``batch`` with exactly ``schema``'s columns, order and types."""
    if batch.schema.equals(schema):
        return batch
    cols = []
    for f in schema:
        arr = batch.column(batch.schema.get_field_index(f.name))
        if arr.type != f.type:
            arr = arr.cast(f.type)
        cols.append(arr)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def delete_written(store: ObjectStore, data_uri: str, written: WrittenFiles) -> None:
    """Best-effort removal of uncommitted fragment files (a failed job leaves no trace)."""
    for f in written.fragments:
        for df in f.files:
            try:
                store.delete(f"{data_uri}/data/{file_path(df)}")
            except LakevecError:
                pass  # vacuum removes orphans later


def rewrite_without_ids(data_uri: str, storage_options, schema: pa.Schema, mode: str, fragments, partitions: dict,
                        drop_ids) -> WrittenFiles:
    """Copy uncommitted ``fragments`` without the rows whose id is in ``drop_ids``; delete the replaced files.

    Used when ids turn out to be duplicates after the files were written (across tasks, or committed by a
    concurrent writer): fragments keep their partition; untouched ones are kept as they are."""
    import pyarrow.compute as pc
    from lance.file import LanceFileReader

    drop = pa.array(list(drop_ids), type=schema.field(ID_COLUMN).type)
    out = WrittenFiles()
    from ..store.location import parse_location
    store = ObjectStore(parse_location(data_uri, storage_options))
    old_files = []
    for frag in fragments:
        path = file_path(frag.files[0])
        uri = f"{data_uri}/data/{path}"
        part = partitions.get(path)
        try:
            tbl = LanceFileReader(uri, storage_options=storage_options).read_all().to_table()
        except Exception as e:
            raise wrap_io_error(e, f"reading uncommitted fragment {uri}") from e
        keep = pc.invert(pc.is_in(tbl.column(ID_COLUMN), value_set=drop))
        if pc.all(keep).as_py():
            out.fragments.append(frag)
            out.partitions[path] = part
            out.rows += frag.physical_rows
            out.bytes += int(frag.files[0].file_size_bytes or 0)
            continue
        tbl = tbl.filter(keep).select(schema.names).cast(schema)
        old_files.append(uri)
        if tbl.num_rows == 0:
            continue
        try:
            frags = write_fragments(tbl, data_uri, schema=schema, mode=mode, max_rows_per_file=max(1, tbl.num_rows),
                                    storage_options=storage_options)
        except Exception as e:
            raise wrap_io_error(e, f"rewriting fragments of {data_uri}") from e
        out.add(frags, part)
    for uri in old_files:
        try:
            store.delete(uri)
        except LakevecError:
            pass  # vacuum removes it later
    return out
