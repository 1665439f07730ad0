"""Join results: final parts (with the requested columns), and writing them to ``output=`` exactly once.

Final parts. The task that finalises some left rows (grouped plan: the score task; shuffle plan: the merge
task; dedup: the dedup task) attaches the requested columns -- ``right_<c>`` taken from the right table at
the join's version by row address, ``left_<c>`` from the left table, from the right table (self-join) or from
the left columns phase 1 kept in scratch -- and either returns the part in its result (in-memory result) or
writes it as a Parquet file under the output's staging folder.

Exactly once (a Parquet folder, local or s3://)::

    <output>/_staging/<run id>/part-*.parquet     written by tasks (hidden: '_' prefix)
    <output>/_lakevec_join.json                    the commit point: created with If-None-Match
                                                   (put_if_absent), listing the parts, rows, key, report
    <output>/part-<run id>-*.parquet               published (moved) after the commit
    <output>/_SUCCESS                              written once every part is published

A run first reads ``_lakevec_join.json``: with the same idempotency key the join is already done (an
unfinished publication is completed) and nothing is committed; with another key the folder belongs to
another join and the run fails before doing any work. Two runs with one key race on the conditional
create: exactly one commits, the other deletes its staged parts. A run that dies before its commit leaves
only staged files, which the next committed run removes; one that dies after it leaves a manifest that
the next run's publication completes. Readers use ``read_output(uri)`` (the manifest's parts) or, once
``_SUCCESS`` exists, any Parquet reader on the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..arrays import unique
from ..errors import InvalidArgumentError, StorageError
from ..store.location import parse_location
from ..store.objects import ObjectStore, wrap_io_error

MANIFEST = "_lakevec_join.json"
SUCCESS = "_SUCCESS"
STAGING = "_staging"


@dataclass(frozen=True)
class FinalSpec:
    """Where and how final parts are written (picklable)."""

    root: str | None  # staging folder for Parquet parts; None: parts are returned in the task results
    run_id: str
    storage_options: dict | None = field(default=None, repr=False)
    keep_internal: bool = False  # keep _ref/_raddr (the driver sorts an in-memory result by them)
    right_columns: tuple = ()
    left_columns: tuple = ()
    left_source: str = "none"  # "right" (self-join) | "table" | "shards" | "none"
    left_table: tuple | None = None  # (data uri, version) of a left table
    left_storage_options: dict | None = field(default=None, repr=False)
    shard_columns: tuple = ()  # ((shard index, uri, offset, length, rows), ...) of phase-1 "c" sections
    scratch_root: str | None = None
    pair_order: bool = False  # dedup: sort by (left_id, right_id)


@dataclass
class PartInfo:
    uri: str | None
    rows: int
    bytes: int = 0
    table: pa.Table | None = None


_LEFT_DS: dict = {}


def _left_dataset(spec: FinalSpec):
    key = (spec.left_table, os.getpid())
    ds = _LEFT_DS.get(key)
    if ds is None:
        from ..store.lance_io import open_dataset
        ds = open_dataset(spec.left_table[0], spec.left_storage_options, spec.left_table[1], what="left table")
        _LEFT_DS[key] = ds
    return ds


def _left_columns_from_shards(spec: FinalSpec, refs: np.ndarray) -> pa.Table:
    from .scratch import ScratchSpec, SectionIndex, read_sections, scratch_store
    store = scratch_store(ScratchSpec(spec.scratch_root, spec.storage_options))
    shards = set(unique(refs >> 32).tolist())
    tables = []
    for sidx, uri, off, n, rows in spec.shard_columns:
        if sidx in shards:
            got = read_sections(store, SectionIndex(uri, {"c": (off, n, rows)}), ["c"])
            tables.append(got["c"])
    cols = list(spec.left_columns)
    if not tables:
        return pa.table({c: pa.nulls(len(refs)) for c in cols})
    allc = pa.concat_tables(tables, promote_options="default")
    have = allc.column("_ref").to_numpy()
    order = np.argsort(have)
    pos = order[np.searchsorted(have, refs, sorter=order)]
    return allc.select(cols).take(pa.array(pos))


def attach_columns(rows: pa.Table, spec: FinalSpec, right) -> pa.Table:
    """Append ``left_<c>`` and ``right_<c>`` columns to final rows."""
    from ..search.reader import take_columns
    if spec.left_columns and spec.left_source != "none":
        refs = rows.column("_ref").to_numpy()
        if spec.left_source == "right":
            from .right import right_state
            extra = take_columns(right_state(right).snap.ds, refs.astype(np.uint64), list(spec.left_columns))
        elif spec.left_source == "table":
            extra = take_columns(_left_dataset(spec), refs.astype(np.uint64), list(spec.left_columns))
        else:
            extra = _left_columns_from_shards(spec, refs)
        for c in spec.left_columns:
            rows = rows.append_column(f"left_{c}", extra.column(c))
    if spec.right_columns:
        from .right import right_state
        ds = right_state(right).snap.ds
        extra = take_columns(ds, rows.column("_raddr").to_numpy(), list(spec.right_columns))
        for c in spec.right_columns:
            rows = rows.append_column(f"right_{c}", extra.column(c))
    return rows


def emit_final(rows: pa.Table | None, spec: FinalSpec, name: str, right) -> PartInfo:
    """Attach columns, order, and return or write one final part."""
    if rows is None or not rows.num_rows:
        return PartInfo(None, 0)
    rows = attach_columns(rows, spec, right)
    if spec.pair_order:
        rows = rows.sort_by([("left_id", "ascending"), ("right_id", "ascending")])
    else:
        rows = rows.sort_by([("_ref", "ascending"), ("rank", "ascending")])
    cols = ["left_id", "right_id", "distance", "rank"] + [c for c in rows.column_names
                                                         if c.startswith(("left_", "right_")) and c not in
                                                         ("left_id", "right_id")]
    if spec.keep_internal:
        cols += ["_ref", "_raddr"]
    rows = rows.select(cols)
    if spec.root is None:
        return PartInfo(None, rows.num_rows, rows.nbytes, rows)
    store = ObjectStore(parse_location(spec.root, spec.storage_options))
    # unique per attempt: a retried or speculative copy of the task never writes over this file
    uri = f"{spec.root.rstrip('/')}/part-{spec.run_id}-{name}-{uuid.uuid4().hex[:8]}.parquet"
    path = store.loc.fs_path(uri)
    try:
        if store.loc.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with store.fs.open_output_stream(path) as out:
            pq.write_table(rows, out)
        size = store.fs.get_file_info(path).size
    except Exception as e:
        raise wrap_io_error(e, f"writing join output part {uri}") from e
    return PartInfo(uri, rows.num_rows, int(size or 0))


# --------------------------------------------------------------------------------------------------
# Parquet output folder: exactly-once commit
# --------------------------------------------------------------------------------------------------

def default_key(parts: dict) -> str:
    """The idempotency key of a join when none is given: a hash of what determines its result."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return "join-" + h[:32]


class ParquetOutput:
    """The exactly-once protocol of a Parquet output folder (see the module docstring)."""

    def __init__(self, uri: str, storage_options: dict | None, key: str, run_id: str):
        if not isinstance(uri, (str, os.PathLike)) or not str(uri).strip():
            raise InvalidArgumentError(f"output must be a folder path or s3:// URI, got {uri!r}")
        uri = os.fspath(uri).rstrip("/")
        if uri.endswith(".parquet"):
            raise InvalidArgumentError(f"output={uri!r}: give a folder (the join writes several Parquet parts "
                                       f"and a manifest there), e.g. {uri[:-8]!r}")
        self.loc = parse_location(uri, storage_options)
        self.uri = self.loc.uri
        self.store = ObjectStore(self.loc)
        self.key = key
        self.run_id = run_id
        self.storage_options = storage_options
        self.manifest_uri = self.loc.join(MANIFEST)
        self.staging = self.loc.join(STAGING, run_id)

    def existing(self) -> dict | None:
        """Return the committed manifest of this key (completing its publication), or None if the folder has
        no committed join; raise if it holds another join's result or unrelated files."""
        if self.store.exists(self.manifest_uri):
            m = self.store.read_json(self.manifest_uri)
            if m.get("key") != self.key:
                raise InvalidArgumentError(
                    f"output {self.uri} already holds the result of another join (idempotency key "
                    f"{m.get('key')!r}, this join's key is {self.key!r}); write to a new folder, or pass the same "
                    "idempotency_key to re-run that join")
            self.publish(m)
            return m
        import pyarrow.fs as pafs
        visible = [i for i in self.store.list(self.uri) if not i.base_name.startswith(("_", "."))]
        if visible:
            names = sorted(i.base_name for i in visible)[:5]
            raise InvalidArgumentError(f"output folder {self.uri} is not empty ({names}); a join writes into a new "
                                       "or empty folder")
        del pafs
        return None

    def commit(self, parts: list[PartInfo], rows: int, report: dict) -> tuple[bool, dict]:
        """Create the manifest (the commit point); return (committed by this run, the manifest in force)."""
        staged = [p.uri for p in parts if p.uri]
        other = self.committed_by_other()
        if other is not None:  # a concurrent run with this key committed first
            self.discard()
            return False, other
        for u in staged:  # never commit a manifest that names a missing part
            if not self.store.exists(u):
                other = self.committed_by_other()
                if other is not None:  # ... and removed the staged files of every other run
                    return False, other
                raise StorageError(f"join output part {u} is missing before the commit; nothing was committed")
        finals = [self.loc.join(u.rsplit("/", 1)[1]) for u in staged]
        manifest = {"key": self.key, "run_id": self.run_id, "created_at": time.time(), "rows": int(rows),
                    "parts": [f.rsplit("/", 1)[1] for f in finals], "staged": staged, "report": report,
                    "format": "parquet"}
        created = self.store.put_json_if_absent(self.manifest_uri, manifest)
        if not created:
            other = self.store.read_json(self.manifest_uri)
            self.discard()
            if other.get("key") != self.key:
                raise InvalidArgumentError(f"output {self.uri} was committed by another join (key {other.get('key')!r})"
                                           " while this one ran; nothing was committed")
            self.publish(other)
            return False, other
        self.publish(manifest)
        return True, manifest

    def committed_by_other(self) -> dict | None:
        """The manifest of this key if some run committed it (its publication completed), else None."""
        try:
            if not self.store.exists(self.manifest_uri):
                return None
            m = self.store.read_json(self.manifest_uri)
        except StorageError:
            return None
        if m.get("key") != self.key:
            return None
        self.publish(m)
        return m

    def publish(self, manifest: dict) -> None:
        """Move the staged parts of a committed manifest to the folder, then write _SUCCESS (idempotent)."""
        if self.store.exists(self.loc.join(SUCCESS)):
            return
        for staged, name in zip(manifest.get("staged", []), manifest.get("parts", [])):
            final = self.loc.join(name)
            src, dst = self.loc.fs_path(staged), self.loc.fs_path(final)
            try:
                if self.store.fs.get_file_info(src).type.name == "File":
                    self.store.fs.move(src, dst)
            except Exception as e:
                raise wrap_io_error(e, f"publishing join output part {final}") from e
        self.store.write_bytes(self.loc.join(SUCCESS), b"")
        try:  # staged files of this and of earlier, failed runs: none can commit any more
            self.store.delete_tree(self.loc.join(STAGING))
        except Exception:
            pass

    def discard(self) -> None:
        try:
            self.store.delete_tree(self.staging)
        except Exception:
            pass


class LanceOutput(ParquetOutput):
    """``output="<...>.lance"``: the same commit point (the manifest, created with If-None-Match, next to the
    dataset's own folders), then publication creates the Lance dataset from the staged parts with one
    ``mode="create"`` write (atomic: its first version appears at the end; a concurrent or repeated
    publication finds it and stops). Readers open it with ``lance.dataset(uri)`` or ``read_output``."""

    LANCE_DIRS = ("data", "_versions", "_transactions", "_indices", "_deletions", "_refs")

    def existing(self) -> dict | None:
        if not self.store.exists(self.manifest_uri):
            found = [i.base_name for i in self.store.list(self.uri) if i.base_name in self.LANCE_DIRS]
            if found:
                raise InvalidArgumentError(f"output {self.uri} is already a Lance dataset not written by this join; "
                                           "write to a new path")
        return super().existing()

    def publish(self, manifest: dict) -> None:
        if self.store.exists(self.loc.join(SUCCESS)):
            return
        import lance
        import pyarrow.dataset as pads
        opts = self.loc.lance_options()
        try:
            lance.dataset(self.uri, storage_options=opts)
            exists = True
        except Exception:
            exists = False
        if not exists:
            staged = [self.loc.fs_path(u) for u in manifest.get("staged", [])]
            try:
                if staged:
                    data = pads.dataset(staged, filesystem=self.store.fs, format="parquet")
                    lance.write_dataset(data.scanner().to_reader(), self.uri, mode="create", storage_options=opts)
                else:
                    lance.write_dataset(pa.table({"left_id": pa.array([], pa.int64()),
                                                  "right_id": pa.array([], pa.int64()),
                                                  "distance": pa.array([], pa.float32()),
                                                  "rank": pa.array([], pa.int32())}), self.uri, mode="create",
                                        storage_options=opts)
            except Exception as e:
                try:  # a concurrent publication of the same manifest won the create
                    lance.dataset(self.uri, storage_options=opts)
                except Exception:
                    raise wrap_io_error(e, f"publishing join output {self.uri} as a Lance dataset") from e
        self.store.write_bytes(self.loc.join(SUCCESS), b"")
        try:
            self.store.delete_tree(self.loc.join(STAGING))
        except Exception:
            pass


def make_output(uri, storage_options, key: str, run_id: str) -> ParquetOutput:
    """The output protocol for ``uri``: a Lance dataset when it ends with ``.lance``, else a Parquet folder."""
    cls = LanceOutput if isinstance(uri, (str, os.PathLike)) and os.fspath(uri).rstrip("/").endswith(".lance") \
        else ParquetOutput
    return cls(uri, storage_options, key, run_id)


def read_output(uri: str, storage_options: dict | None = None) -> pa.Table:
    """Return the committed result of a join written to ``uri`` (a Parquet folder: its manifest's parts; a
    ``.lance`` dataset: its rows)."""
    loc = parse_location(uri, storage_options)
    store = ObjectStore(loc)
    m_uri = loc.join(MANIFEST)
    if not store.exists(m_uri):
        raise StorageError(f"no committed join result at {loc.uri} (missing {MANIFEST})")
    m = store.read_json(m_uri)
    if loc.uri.endswith(".lance"):
        import lance
        LanceOutput(loc.uri, storage_options, m.get("key"), m.get("run_id", "")).publish(m)
        try:
            return lance.dataset(loc.uri, storage_options=loc.lance_options()).to_table()
        except Exception as e:
            raise wrap_io_error(e, f"reading join output {loc.uri}") from e
    tables = []
    for name in m.get("parts", []):
        final = loc.join(name)
        path = loc.fs_path(final)
        if store.fs.get_file_info(path).type.name != "File":  # committed but not yet published
            idx = m["parts"].index(name)
            path = loc.fs_path(m["staged"][idx])
        try:
            tables.append(pq.read_table(path, filesystem=store.fs))
        except Exception as e:
            raise wrap_io_error(e, f"reading join output part {final}") from e
    if not tables:
        return pa.table({"left_id": pa.array([], pa.int64()), "right_id": pa.array([], pa.int64()),
                         "distance": pa.array([], pa.float32()), "rank": pa.array([], pa.int32())})
    return pa.concat_tables(tables, promote_options="default")
