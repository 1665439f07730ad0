"""Turn every accepted input kind into a stream of Arrow record batches with canonical column names.

Accepted: pyarrow Table / RecordBatch / RecordBatchReader, pandas DataFrame, a dict of columns
(``{"id": ..., "vector": 2-D array, ...}``), or Parquet sources: a path, a glob, a folder, or a list
of them, on local disk or ``s3://``. A folder means its ``*.parquet`` files at any depth, except
hidden ones (a path component starting with ``_`` or ``.``, as Spark and Hadoop write them); in a
glob, ``*`` and ``?`` stay within one path segment and ``**`` spans segments, on S3 as locally.
Parquet is read row group by row group, with page-checksum verification (a page whose CRC does not match
raises ``ValidationError`` naming the file); a failed read resumes at the row group it failed on (the
iteration is retried, not only the open). Sources are listed with pyarrow.fs, one code path for local disk
and S3.
"""
from __future__ import annotations

import hashlib
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..config import ID_COLUMN, INGEST_BATCH_ROWS, VECTOR_COLUMN
from ..errors import InvalidArgumentError, LakevecError, SchemaError, StorageError, ValidationError
from ..store.location import parse_location
from ..store.objects import ObjectStore, wrap_io_error

READ_RETRIES = 3


@dataclass(frozen=True)
class FileSource:
    """One Parquet file to ingest: URI plus identity (size, mtime/etag) for idempotency keys."""

    uri: str
    size: int
    mtime_ns: int = 0
    etag: str = ""  # S3 objects: their ETag (modification times there have one-second resolution)

    def identity(self) -> str:
        if self.etag:
            return f"{self.uri}|{self.size}|etag:{self.etag}"
        return f"{self.uri}|{self.size}|{self.mtime_ns}"


def is_path_input(data) -> bool:
    """Return True if ``data`` names Parquet files (str/PathLike or a list of them)."""
    if isinstance(data, (str, os.PathLike)):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(isinstance(x, (str, os.PathLike)) for x in data)


def resolve_files(data, storage_options: dict | None = None) -> list[FileSource]:
    """Expand paths/globs/folders (local or s3://) into a sorted list of Parquet FileSources."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    out: list[FileSource] = []
    for item in items:
        item = os.fspath(item)
        found = _expand_one(item, storage_options)
        if not found:
            raise StorageError(f"no Parquet files found at {item}")
        out.extend(found)
    seen, uniq = set(), []
    for s in out:
        if s.uri not in seen:
            seen.add(s.uri)
            uniq.append(s)
    return uniq


def _expand_one(item: str, storage_options: dict | None) -> list[FileSource]:
    """List the Parquet files that one source names, with pyarrow.fs (the same code for local disk and S3)."""
    if item.startswith(("s3://", "s3a://")):
        store = file_store(item, storage_options)
        fs, path, scheme = store.fs, store.loc.fs_path(store.loc.uri), "s3://"
    else:
        store, fs, scheme = None, pafs.LocalFileSystem(), ""
        path = os.path.abspath(os.path.expanduser(item[7:] if item.startswith("file://") else item))
    has_glob = any(c in path for c in "*?[")
    try:
        if not has_glob:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                found = [info]
            elif info.type == pafs.FileType.NotFound and store is None:
                raise StorageError(f"Parquet source not found: {item}")
            else:  # a folder (on S3: a prefix) is read recursively: its *.parquet files, hidden ones excluded
                found = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
                         if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                         and not _hidden(i.path, path)]
        else:  # list below the pattern's fixed leading folder, keep what the pattern matches
            base = re.split(r"[*?\[]", path, maxsplit=1)[0].rsplit("/", 1)[0] or "/"
            pat = _glob_regex(path)
            found = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
                     if i.type == pafs.FileType.File and pat.fullmatch(i.path)]
    except LakevecError:
        raise
    except Exception as e:
        raise wrap_io_error(e, f"listing {item}") from e
    sources = sorted((FileSource(scheme + i.path, int(i.size), int(i.mtime_ns or 0)) for i in found),
                     key=lambda s: s.uri)
    return _with_etags(store, sources) if store is not None else sources


def _hidden(path: str, folder: str) -> bool:
    """True if a file found below ``folder`` is hidden by the Hadoop/Spark convention: a path component
    starting with '_' or '.' (``_temporary/`` of a running Spark job, ``.part-0.parquet.crc``...)."""
    rel = path[len(folder):].strip("/")
    return any(part.startswith(("_", ".")) for part in rel.split("/"))


def _with_etags(store: ObjectStore, sources: list[FileSource]) -> list[FileSource]:
    """Return ``sources`` with their S3 ETags (one HEAD each, in parallel): an object rewritten within the
    same second with the same size is still a new source for idempotency."""
    from concurrent.futures import ThreadPoolExecutor

    def head(src: FileSource) -> FileSource:
        path = src.uri[len("s3://"):]
        try:
            with store.fs.open_input_file(path) as f:
                md = f.metadata()
        except FileNotFoundError as e:
            raise StorageError(f"Parquet source not found: {src.uri}") from e
        except Exception as e:
            raise wrap_io_error(e, f"reading the metadata of {src.uri}") from e
        store.counters.add(gets=1)
        etag = md.get("ETag") or md.get(b"ETag") or b""
        etag = etag.decode() if isinstance(etag, bytes) else str(etag)
        return FileSource(src.uri, src.size, src.mtime_ns, etag.strip('"'))

    if len(sources) <= 1:
        return [head(s) for s in sources]
    with ThreadPoolExecutor(max_workers=min(16, len(sources))) as pool:
        return list(pool.map(head, sources))


def _glob_regex(pattern: str) -> "re.Pattern":
    """Return a regex matching paths like ``glob(recursive=True)``: ``*`` and ``?`` stay within one path
    segment, ``**`` spans segments (as Python 3.13's ``glob.translate``, which older Pythons lack)."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))


def file_store(uri: str, storage_options: dict | None) -> ObjectStore:
    """Return an ObjectStore rooted at ``uri`` (bucket root for S3) with the given credentials."""
    return ObjectStore(parse_location(uri.replace("s3a://", "s3://"), storage_options))


def sources_key(files: list[FileSource]) -> str:
    """Return the idempotency key derived from source paths, sizes and modification times/ETags."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda s: s.uri):
        h.update(f.identity().encode())
        h.update(b"\n")
    return "src-" + h.hexdigest()[:40]


def iter_parquet(src: FileSource, storage_options: dict | None, batch_rows: int = INGEST_BATCH_ROWS,
                 columns: list[str] | None = None, row_groups: tuple[int, int] | None = None,
                 with_rows: bool = False) -> Iterator:
    """Yield the record batches of one Parquet file (or of row groups ``[start, stop)`` of it).

    A failed read is retried from the row group it failed on: the iteration is retried, not only the
    open. With ``with_rows`` it yields ``(first row number in the file, batch)``.
    """
    group = None
    row = 0
    attempts = 0
    while True:
        try:
            pf = open_parquet(src, storage_options)
            md = pf.metadata
            start, stop = row_groups if row_groups is not None else (0, md.num_row_groups)
            stop = min(stop, md.num_row_groups)
            if group is None:
                group = start
                row = sum(md.row_group(g).num_rows for g in range(start))
            while group < stop:
                tbl = pf.read_row_group(group, columns=columns)
                for b in tbl.to_batches(max_chunksize=batch_rows):
                    yield (row, b) if with_rows else b
                    row += b.num_rows
                group += 1
                attempts = 0
            return
        except LakevecError:
            raise
        except (OSError, pa.ArrowException) as e:
            if _is_damage(e):
                raise ValidationError(f"{src.uri} is damaged: a page of row group {group} fails its checksum "
                                      f"({e}); nothing from this file was accepted", source=src.uri) from e
            attempts += 1
            if attempts > READ_RETRIES or isinstance(e, pa.ArrowInvalid):
                raise wrap_io_error(e, f"reading Parquet {src.uri} (row group {group})") from e
            time.sleep(0.2 * 2 ** attempts)  # transient store error: reopen and resume at this group


def read_ahead(items, depth: int = 2):
    """Yield the items of the iterable ``items``, produced by a background thread up to ``depth`` ahead.

    Ingestion reads Parquet (pyarrow, GIL released) and writes Lance fragments (Rust, GIL released) one
    after the other; reading the next batches while the current ones are written overlaps the two (on S3:
    1M x 128 rows in 7.2 s -> see ``lakevec bench ingest``). An exception of the producer is raised here,
    in order; closing the generator early stops the producer at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for it in items:
                if not put((None, it)):
                    return
            put((end, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((e, None))

    worker = threading.Thread(target=produce, name="lakevec-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            tag, it = q.get()
            if tag is end:
                return
            if tag is not None:
                raise tag
            yield it
    finally:
        stop.set()


def _is_damage(e: BaseException) -> bool:
    """True for a Parquet page whose CRC does not match its bytes (the file is damaged: no retry helps)."""
    text = str(e).lower()
    return "checksum" in text or "page integrity" in text


def open_parquet(src: FileSource, storage_options: dict | None) -> pq.ParquetFile:
    """Open one Parquet source; pages are verified against their CRC checksums (when the writer stored them)
    as they are read, so a damaged file raises instead of yielding altered rows."""
    try:
        if src.uri.startswith("s3://"):
            store = file_store(src.uri, storage_options)
            f = store.fs.open_input_file(store.loc.fs_path(store.loc.uri))
            store.counters.add(gets=1)
        else:
            f = src.uri
        return pq.ParquetFile(f, page_checksum_verification=True)
    except FileNotFoundError as e:
        raise StorageError(f"Parquet source not found: {src.uri}") from e
    except pa.ArrowInvalid as e:
        raise StorageError(f"{src.uri} is not a readable Parquet file: {e}") from e


def rename_columns(batch: pa.RecordBatch, id_column: str, vector_column: str, where: str) -> pa.RecordBatch:
    """Return ``batch`` with the user's id/vector columns renamed to the canonical names."""
    names = batch.schema.names
    for col, role in ((id_column, "id"), (vector_column, "vector")):
        if col not in names:
            raise SchemaError(f"{where}: {role} column {col!r} not found (columns: {names})", source=where)
    if id_column == ID_COLUMN and vector_column == VECTOR_COLUMN:
        return batch
    clash = [n for n in names if n in (ID_COLUMN, VECTOR_COLUMN) and n not in (id_column, vector_column)]
    if clash:
        raise SchemaError(f"{where}: column(s) {clash} clash with the canonical id/vector names", source=where)
    mapping = {id_column: ID_COLUMN, vector_column: VECTOR_COLUMN}
    return batch.rename_columns([mapping.get(n, n) for n in names])


def memory_batches(data, id_column: str, vector_column: str,
                   batch_rows: int = INGEST_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Yield record batches (canonical names) from an in-memory input of any accepted kind."""
    where = "input"
    if isinstance(data, pa.RecordBatchReader):
        for b in data:
            yield rename_columns(b, id_column, vector_column, where)
        return
    table = to_arrow_table(data, vector_column)
    for b in table.to_batches(max_chunksize=batch_rows):
        yield rename_columns(b, id_column, vector_column, where)


def to_arrow_table(data, vector_column: str = VECTOR_COLUMN) -> pa.Table:
    """Convert a pyarrow/pandas/dict input to a pyarrow Table (vectors as a list column)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, dict):
        if not data:
            raise InvalidArgumentError("input dict is empty: expected {'id': ..., 'vector': 2-D array, ...}")
        cols = {}
        for name, values in data.items():
            if name == vector_column:
                cols[str(name)] = vectors_to_arrow(values, name)
            elif isinstance(values, np.ndarray) and values.ndim == 2:  # another matrix: one list per row
                cols[str(name)] = pa.FixedSizeListArray.from_arrays(_column(values.ravel(), name), values.shape[1])
            else:
                cols[str(name)] = _column(values, name)
        try:
            return pa.table(cols)
        except pa.ArrowInvalid as e:
            raise InvalidArgumentError(f"input dict columns do not line up: {e}") from e
    pd = sys.modules.get("pandas")  # a DataFrame exists only if pandas was imported: never import it here
    if pd is not None and isinstance(data, pd.DataFrame):
        if vector_column not in data.columns:
            raise SchemaError(f"input DataFrame: vector column {vector_column!r} not found "
                              f"(columns: {list(map(str, data.columns))})")
        cols = {}
        for name in data.columns:
            s = data[name]
            cols[str(name)] = vectors_to_arrow(s.to_numpy(), name) if name == vector_column else _column(s, name)
        return pa.table(cols)
    if isinstance(data, np.ndarray):
        raise InvalidArgumentError("a bare array has no ids: pass {'id': ids, 'vector': array} instead")
    raise InvalidArgumentError(
        f"unsupported input type {type(data).__name__}: expected a pyarrow Table/RecordBatchReader, a pandas "
        "DataFrame, a dict of columns, or Parquet path(s)"
    )


def _column(values, name) -> pa.Array:
    try:
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            return values
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(f"input column {name!r} cannot be converted to Arrow: {e}") from e


def vectors_to_arrow(values, name=VECTOR_COLUMN) -> pa.Array:
    """Convert a 2-D array or a sequence of 1-D arrays to an Arrow list array (validation comes later)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 2:
        if values.dtype.kind not in "fiub":
            raise SchemaError(f"vector column {name!r} has dtype {values.dtype}; expected numbers")
        arr = values.astype(np.float32, copy=False) if values.dtype.kind != "f" else values
        flat = pa.array(np.ascontiguousarray(arr).ravel())
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "fiub" and len(values):
        raise SchemaError(f"vector column {name!r} is 1-D: pass one vector per row (a 2-D array)")
    seq = list(values)
    try:
        dims = {len(v) for v in seq if v is not None and not (isinstance(v, float) and np.isnan(v))}
    except TypeError:
        raise SchemaError(f"vector column {name!r} holds non-sequence values "
                          f"(first: {type(seq[0]).__name__ if seq else None})") from None
    if len(dims) == 1 and all(v is not None for v in seq):
        try:
            mat = np.asarray(seq)
        except ValueError:
            mat = None
        if mat is not None and mat.ndim == 2 and mat.dtype.kind in "fiub":
            return vectors_to_arrow(mat, name)
    try:
        return pa.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else list(v) for v in seq])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(f"vector column {name!r} cannot be converted to Arrow lists: {e}") from e
