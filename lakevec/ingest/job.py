"""Table.add: plan the ingestion, validate and write in tasks, commit once, idempotently.

Idempotency: an ingestion has a key (given, or derived from the source files' paths, sizes and
modification times/ETags). Before its commit the driver writes ``_lakevec/ingest/<key>.json``
(state "pending", with its data files); after the commit it records the version. A re-run finds
the record and commits nothing; a pending record whose files reached a committed version (the
driver died between commit and record update) is recognised the same way.

Parquet sources are also idempotent per file: after the commit, every source file gets a record
``_lakevec/ingest/files/<hash of path, size, ETag/mtime>.json``, and the next ingestion leaves out
the files that have one (one LIST). Re-running a growing folder therefore ingests only its new files;
when no file is new, nothing is committed (``skipped``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import lance
import pyarrow as pa

from ..config import ID_COLUMN, MAX_REPORTED_PROBLEMS, PARTITION_COLUMN, VECTOR_COLUMN
from ..errors import CommitConflictError, InvalidArgumentError, LakevecError, ValidationError
from ..store.lance_io import commit
from ..store.objects import new_id
from .convert import (FileSource, is_path_input, iter_parquet, memory_batches, rename_columns,
                      resolve_files, sources_key)
from .validate import IdTracker, TableSpec, check_batch, format_problems
from .write import FragmentSink, WrittenFiles, delete_written

BAD_ROW_MODES = ("raise", "skip", "quarantine")


@dataclass
class AddResult:
    """What an ingestion did: rows added and rejected, the version it committed, its key."""

    rows_added: int = 0
    rows_rejected: int = 0
    version: int = 0
    key: str | None = None
    skipped: bool = False  # True when the key was already ingested (nothing committed)
    problems: list = field(default_factory=list)  # first bad rows: (source, row, column, reason)
    seconds: float = 0.0
    bytes_written: int = 0
    files_skipped: int = 0  # Parquet source files left out because an earlier ingestion committed them

    def to_dict(self) -> dict:
        return {"rows_added": self.rows_added, "rows_rejected": self.rows_rejected, "version": self.version,
                "key": self.key, "skipped": self.skipped, "problems": self.problems[:20],
                "seconds": round(self.seconds, 3), "bytes_written": self.bytes_written,
                "files_skipped": self.files_skipped}


def table_spec(table, ds: lance.LanceDataset) -> TableSpec:
    """Return the validation spec of ``table`` at dataset version ``ds``."""
    user = [f for f in ds.schema if f.name not in (ID_COLUMN, VECTOR_COLUMN, PARTITION_COLUMN)]
    fixed = bool(user) or ds.count_rows() > 0
    m = table.meta
    return TableSpec(m.name, m.dim, m.metric, m.id_type, pa.schema(user) if fixed else None)


def add(table, data, id_column: str = ID_COLUMN, vector_column: str = VECTOR_COLUMN,
        on_bad_rows: str = "raise", idempotency_key: str | None = None, engine: str = "local",
        check_existing_ids: bool = True) -> AddResult:
    """Validate ``data`` and append it to ``table`` in one commit (see Table.add)."""
    t0 = time.time()
    if on_bad_rows not in BAD_ROW_MODES:
        raise InvalidArgumentError(f"on_bad_rows={on_bad_rows!r}: expected one of {BAD_ROW_MODES}")
    if not isinstance(id_column, str) or not isinstance(vector_column, str):
        raise InvalidArgumentError("id_column and vector_column must be column names (str)")
    if idempotency_key is not None:
        _check_key(idempotency_key)
    if engine != "local":
        from ..engines import get_engine
        return get_engine(engine).ingest(table, data, id_column=id_column, vector_column=vector_column,
                                         on_bad_rows=on_bad_rows, idempotency_key=idempotency_key)
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise InvalidArgumentError(f"input is empty: an empty list has no Parquet paths (no rows to add to "
                                   f"table {table.name!r})")
    files = resolve_files(data, table.lake.storage_options) if is_path_input(data) else None
    old_files: list = []
    if files is not None:
        files, old_files = new_sources(table, files)
        if not files:  # every file was committed by earlier ingestions
            return AddResult(0, 0, table._open_latest().version, idempotency_key or sources_key(old_files),
                             skipped=True, seconds=time.time() - t0, files_skipped=len(old_files))
    key = idempotency_key or (sources_key(files) if files else None)
    ds = table._open_latest()
    if key is not None:
        done = already_ingested(table, key)
        if done is not None:
            if files:
                record_sources(table, files, key, done)  # the run that committed them died before this
            return AddResult(0, 0, ds.version, key, skipped=True, seconds=time.time() - t0,
                             files_skipped=len(files or []) + len(old_files))
    read_version = ds.version
    spec = table_spec(table, ds)
    snap = table._snapshot_of(ds)
    existing = None
    if check_existing_ids and ds.count_rows() > 0:
        existing = ds.to_table(columns=[ID_COLUMN]).column(ID_COLUMN).to_numpy()
    tracker = IdTracker(spec.id_type, existing)

    if files is not None:
        streams = [(f.uri, _file_batches(f, table.lake.storage_options, id_column, vector_column)) for f in files]
    else:
        streams = [("input", memory_batches(data, id_column, vector_column))]

    written = WrittenFiles()
    sink = None
    problems: list = []
    rejects: list = []
    rejected = 0
    seen_rows = 0
    try:
        for source, batches in streams:
            row = 0
            for batch in batches:
                seen_rows += batch.num_rows
                if batch.num_rows == 0:
                    continue
                if sink is None:
                    spec, sink, mode = _open_sink(table, spec, batch, snap)
                checked = check_batch(batch, spec, row, source, tracker)
                row += batch.num_rows
                if checked.problems:
                    rejected += len(checked.problems)
                    if len(problems) < 1000:
                        problems += [(source, r, c, why) for r, c, why in checked.problems[:1000]]
                    if on_bad_rows == "raise":
                        raise ValidationError(
                            format_problems([(r, c, w) for _, r, c, w in problems], source,
                                            MAX_REPORTED_PROBLEMS) + f"; nothing was written to table {table.name!r}"
                            " (use on_bad_rows='skip' or 'quarantine' to ingest the good rows)",
                            problems=problems, source=source)
                    if on_bad_rows == "quarantine":
                        rejects += [(source, r, i, why) for r, i, why in checked.bad_rows]
                if checked.good is not None:
                    sink.add(checked.good, checked.vectors)
        if seen_rows == 0:
            what = (f"Parquet source(s) {', '.join(f.uri for f in files[:5])}" if files is not None
                    else "input")
            raise InvalidArgumentError(f"{what} is empty: no rows to add to table {table.name!r}")
        if sink is not None:
            written = sink.finish()
    except BaseException:
        if sink is not None:
            delete_written(table.store, table.data_uri, sink.out)
        raise

    version = finish_ingest(table, written, read_version, mode, snap, key,
                            sink.schema if mode == "overwrite" else None, files, rejects)
    return AddResult(written.rows, rejected, version, key, False,
                     [list(p) for p in problems[:MAX_REPORTED_PROBLEMS * 4]], time.time() - t0, written.bytes,
                     len(old_files))


def _open_sink(table, spec: TableSpec, first: pa.RecordBatch, snap):
    """Fix the user columns from the first batch if the table has none yet; return (spec, sink, mode)."""
    mode = "append"
    if spec.user_schema is None:
        user = [f for f in first.schema if f.name not in (ID_COLUMN, VECTOR_COLUMN)]
        spec = TableSpec(spec.name, spec.dim, spec.metric, spec.id_type, pa.schema(user))
        if user:
            mode = "overwrite"  # the first rows add user columns: commit as Overwrite of the empty table
    schema = spec.output_schema()
    sink = FragmentSink(table.data_uri, schema, table.lake.lance_options, snap.model, mode=mode)
    return spec, sink, mode


def _file_batches(src: FileSource, storage_options, id_column, vector_column):
    for b in iter_parquet(src, storage_options):
        yield rename_columns(b, id_column, vector_column, src.uri)


def commit_written(table, written: WrittenFiles, read_version: int, mode: str, snap, key: str | None,
                   new_schema: pa.Schema | None = None, sources: list[FileSource] | None = None) -> int:
    """Commit fragments written by tasks as one new version; record the key (and the Parquet ``sources``,
    see ``new_sources``); return the version."""
    files = sorted(written.partitions)
    try:
        version = _commit(table, written, read_version, mode, snap, key, new_schema, files)
    except BaseException:
        # nothing was committed (_commit checked): the files are orphans, remove them now
        delete_written(table.store, table.data_uri, written)
        raise
    # After the commit: a failure to write the records below must not delete committed files.
    if sources:
        record_sources(table, sources, key, version)
    if key is not None:
        _write_record(table, key, {"state": "committed", "version": version, "read_version": read_version,
                                   "rows": written.rows, "files": files[:10000], "committed_at": time.time()})
    return version


def _commit(table, written: WrittenFiles, read_version: int, mode: str, snap, key: str | None,
            new_schema: pa.Schema | None, files: list[str]) -> int:
    """Write the pending record and the partition-map sidecar, then commit; return the new version."""
    if key is not None:
        _write_record(table, key, {"state": "pending", "read_version": read_version, "files": files[:10000]})
    if snap.index is not None:
        # The sidecar must exist before the commit makes its files visible (see metadata.py).
        assigned = {f: p for f, p in written.partitions.items() if p >= 0}
        if assigned:
            table.files.write_partmap(new_id(), snap.index.index_id, assigned)
    if mode == "overwrite":
        latest = table._open_latest()
        if latest.version != read_version or latest.count_rows() > 0:
            raise CommitConflictError(f"table {table.name!r} changed while its first rows were being "
                                      "written; nothing was committed, retry the ingestion")
        op = lance.LanceOperation.Overwrite(new_schema, written.fragments)
    else:
        op = lance.LanceOperation.Append(written.fragments)
    try:
        version = commit(table.data_uri, op, read_version, table.lake.lance_options,
                         f"committing rows to table {table.name!r}").version
    except BaseException as e:
        # An error does not prove that nothing was committed (the store may have taken the commit and then
        # lost the connection): deleting the files of a commit that happened would break the table.
        version = _commit_happened(table, written, read_version, e)
        if version is None:
            raise
    return version


def finish_ingest(table, written: WrittenFiles, read_version: int, mode: str, snap, key: str | None,
                  new_schema: pa.Schema | None, sources, rejects: list) -> int:
    """Commit what the tasks wrote (or record an empty ingestion), write quarantined rows; return the version."""
    version = read_version
    if written.rows:
        version = commit_written(table, written, read_version, mode, snap, key, new_schema=new_schema,
                                 sources=sources)
    elif key is not None:
        if sources:
            record_sources(table, sources, key, read_version)
        _write_record(table, key, {"state": "committed", "version": read_version, "rows": 0,
                                   "files": [], "read_version": read_version})
    if rejects:
        write_rejects(table, key, rejects)
    table._invalidate()
    return version


def _commit_happened(table, written: WrittenFiles, read_version: int, error: BaseException) -> int | None:
    """Return the version that references ``written``'s files if a commit that raised ``error`` in fact
    happened, else None (also when the store cannot tell: the caller then reports the error)."""
    if not isinstance(error, Exception) or isinstance(error, CommitConflictError):
        return None  # an interrupt or a conflict: Lance did not commit
    try:
        return _version_with_files(table, set(written.partitions), read_version)
    except Exception:
        return None


def _version_with_files(table, files: set, after: int) -> int | None:
    """Return the first version after ``after`` whose fragments reference any of the data ``files``."""
    if not files:
        return None
    latest = table._open_latest()
    for v in range(after + 1, latest.version + 1):
        try:
            dv = latest if v == latest.version else table._open_version(v)
        except LakevecError:
            continue
        if files & {df.path for fr in dv.get_fragments() for df in fr.metadata.files}:
            return v
    return None


def already_ingested(table, key: str) -> int | None:
    """Return the version that committed ``key``, or None if it was never committed."""
    rec = table.files.read_ingest_record(key)
    if rec is None:
        return None
    if rec.get("state") == "committed":
        return int(rec["version"])
    files = set(rec.get("files") or [])
    if not files:
        return None
    # pending: did the commit happen before the driver died? Look at the versions after it.
    v = _version_with_files(table, files, int(rec["read_version"]))
    if v is not None:
        _write_record(table, key, {**rec, "state": "committed", "version": v})
    return v


SOURCES_DIR = "files"  # under _lakevec/ingest/: one record per committed Parquet source file


def _source_record_name(src: FileSource) -> str:
    import hashlib
    return hashlib.sha256(src.identity().encode()).hexdigest()[:40] + ".json"


def new_sources(table, files: list[FileSource]) -> tuple[list[FileSource], list[FileSource]]:
    """Split ``files`` into (not yet ingested, committed by an earlier ingestion), with one LIST."""
    from ..config import META_DIR
    done = set(table.store.list_names(table.loc.join(META_DIR, "ingest", SOURCES_DIR)))
    new = [f for f in files if _source_record_name(f) not in done]
    old = [f for f in files if _source_record_name(f) in done]
    return new, old


def record_sources(table, files: list[FileSource], key: str | None, version: int) -> None:
    """Record that ``files`` were committed at ``version`` (by ingestion ``key``); PUTs run in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    from ..config import META_DIR
    now = time.time()

    def put(f: FileSource) -> None:
        table.store.write_json(table.loc.join(META_DIR, "ingest", SOURCES_DIR, _source_record_name(f)),
                               {"uri": f.uri, "identity": f.identity(), "key": key, "version": version,
                                "committed_at": now})

    if len(files) <= 1 or table.store.loc.is_local:
        for f in files:
            put(f)
        return
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        list(pool.map(put, files))


def _write_record(table, key: str, rec: dict) -> None:
    table.files.write_ingest_record(key, {"key": key, **rec})


def _check_key(key) -> None:
    import re
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.:=-]{1,200}", key):
        raise InvalidArgumentError(f"idempotency_key {key!r} must be 1-200 characters of [A-Za-z0-9_.:=-]")


REJECTS_SCHEMA = pa.schema([
    pa.field("ingest_key", pa.string()), pa.field("source", pa.string()), pa.field("row", pa.int64()),
    pa.field("id", pa.string()), pa.field("reason", pa.string()), pa.field("rejected_at", pa.float64()),
])


def write_rejects(table, key: str | None, rejects: list) -> None:
    """Append quarantined rows (source, row, id, reason) to the table's rejects dataset."""
    now = time.time()
    t = pa.table({
        "ingest_key": [key or ""] * len(rejects),
        "source": [r[0] for r in rejects],
        "row": [int(r[1]) for r in rejects],
        "id": [r[2] for r in rejects],
        "reason": [r[3] for r in rejects],
        "rejected_at": [now] * len(rejects),
    }, schema=REJECTS_SCHEMA)
    uri = table.rejects_uri
    try:
        lance.write_dataset(t, uri, mode="append", storage_options=table.lake.lance_options)
    except Exception as e:
        from ..store.objects import wrap_io_error
        raise wrap_io_error(e, f"writing quarantined rows to {uri}") from e
