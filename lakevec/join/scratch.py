"""Scratch files: the shuffle medium of a join, on the lake's store (or a local folder).

A join moves rows between its phases through files under one scratch root per job
(``<lake>/_scratch/join-<job id>/`` by default; a local temporary folder for the local engine), removed when
the job ends. Using the store makes the local, Ray and Spark engines run the same task functions with
bounded memory: a task reads only the sections it needs, with ranged reads.

A scratch file is a *container of sections*: each section is one Arrow IPC stream (schema + record
batches), stored one after another; the file ends with a JSON footer ``{"sections": {key: [offset, length,
rows]}}``, its length (8 bytes, little endian) and the magic ``LVJ1``. Writers return the section index in
their task result, so readers go straight to the bytes they need (one ranged GET per contiguous run of
sections); the footer makes a file self-describing for debugging. Arrow IPC is uncompressed and read
zero-copy.
"""
from __future__ import annotations

import json
import os
import struct
import uuid
from dataclasses import dataclass, field

import pyarrow as pa

from ..errors import StorageError
from ..store.location import parse_location
from ..store.objects import ObjectStore, wrap_io_error

MAGIC = b"LVJ1"


@dataclass(frozen=True)
class ScratchSpec:
    """Where a job's scratch files live (picklable; options are never printed)."""

    root: str  # local path or s3://bucket/prefix/_scratch/join-<id>
    storage_options: dict | None = field(default=None, repr=False)

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts]])


_STORES: dict = {}


def scratch_store(spec: ScratchSpec) -> ObjectStore:
    """Return an ObjectStore for the scratch root (one per process and root: counters are per store)."""
    key = (spec.root, os.getpid())
    st = _STORES.get(key)
    if st is None:
        st = ObjectStore(parse_location(spec.root, spec.storage_options))
        _STORES[key] = st
    return st


def forget_store(spec: ScratchSpec) -> None:
    _STORES.pop((spec.root, os.getpid()), None)


@dataclass
class SectionIndex:
    """Where the sections of one scratch file are: ``sections[key] = (offset, length, rows)``."""

    uri: str
    sections: dict = field(default_factory=dict)
    bytes: int = 0

    def rows(self, key) -> int:
        s = self.sections.get(str(key))
        return s[2] if s else 0


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


class SectionWriter:
    """Write sections one after another into a scratch file (streamed: memory = one section)."""

    def __init__(self, store: ObjectStore, uri: str):
        self.store = store
        self.uri = uri
        self.index = SectionIndex(uri)
        self._pos = 0
        path = store.loc.fs_path(uri)
        try:
            if store.loc.is_local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            self._out = store.fs.open_output_stream(path)
        except Exception as e:
            raise wrap_io_error(e, f"creating scratch file {uri}") from e

    def add(self, key, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        data = _ipc_bytes(table)
        self._write(data)
        self.index.sections[str(key)] = (self._pos, len(data), table.num_rows)
        self._pos += len(data)

    def _write(self, data) -> None:
        try:
            self._out.write(data)
        except Exception as e:
            raise wrap_io_error(e, f"writing scratch file {self.uri}") from e

    def close(self) -> SectionIndex:
        footer = json.dumps({"sections": self.index.sections}).encode()
        self._write(footer)
        self._write(struct.pack("<Q", len(footer)) + MAGIC)
        try:
            self._out.close()
        except Exception as e:
            raise wrap_io_error(e, f"writing scratch file {self.uri}") from e
        total = self._pos + len(footer) + 12
        self.index.bytes = total
        # S3 uploads large objects in parts of ~8 MiB or more: count one PUT per started 8 MiB
        puts = 1 if self.store.loc.is_local else max(1, -(-total // (8 << 20)))
        self.store.counters.add(puts=puts, bytes_written=total)
        return self.index

    def abort(self) -> None:
        try:
            self._out.close()
        except Exception:
            pass
        try:
            self.store.delete(self.uri)
        except Exception:
            pass


def read_sections(store: ObjectStore, index: SectionIndex, keys) -> dict:
    """Return ``{key: pa.Table}`` for the present ``keys`` of a scratch file; contiguous sections are fetched
    with one ranged read."""
    want = sorted((index.sections[str(k)], str(k)) for k in keys if str(k) in index.sections)
    out: dict = {}
    i = 0
    while i < len(want):
        (off, length, _), _key = want[i]
        j = i + 1
        end = off + length
        while j < len(want) and want[j][0][0] == end:  # extend the run of adjacent sections
            end += want[j][0][1]
            j += 1
        buf = pa.py_buffer(store.read_range(index.uri, off, end - off))
        for (o, n, _), key in want[i:j]:
            try:
                out[key] = pa.ipc.open_stream(buf.slice(o - off, n)).read_all()
            except pa.ArrowException as e:
                raise StorageError(f"scratch file {index.uri} is damaged (section {key}): {e}") from e
        i = j
    return out


def read_footer(store: ObjectStore, uri: str) -> SectionIndex:
    """Read the section index of a scratch file from its footer (debugging and recovery)."""
    size = store.size(uri)
    tail = store.read_range(uri, max(0, size - 12), min(size, 12))
    if len(tail) != 12 or tail[8:] != MAGIC:
        raise StorageError(f"{uri} is not a lakevec scratch file")
    n = struct.unpack("<Q", tail[:8])[0]
    footer = json.loads(store.read_range(uri, size - 12 - n, n))
    return SectionIndex(uri, {k: tuple(v) for k, v in footer["sections"].items()}, size)


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]
