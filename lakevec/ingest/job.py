"""Table.add: validate and write in tasks, commit once through the commit protocol, idempotently.

An ingestion runs inside a ``commit.WriteJob``: a lease (vacuum keeps its files) and, when it has a key,
the key's claim, so concurrent runs of the same ingestion wait for one another instead of racing. The
key is ``idempotency_key``, or for Parquet sources a hash of their paths, sizes and ETags/mtimes.

Then: the rows are validated batch by batch (``validate.check_batch``); ids are checked against the
table's id runs that can overlap them (``commit.ids.IdIndex``: an append of new, increasing ids reads no
existing id at all); good rows are written as fragments (one partition each once indexed); the ids
added are written as the commit's id run, quarantined rows as its rejects file; and one commit
(``commit.protocol``) publishes all of it atomically: rows, partition map, id run, key, source files,
rejects. The protocol re-checks key, source files and ids against whatever committed meanwhile.

Idempotency per source file: the state of every version lists the source files committed so far, so
re-running a job over a growing folder ingests only its new files, and re-running it unchanged commits
nothing (``skipped``).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import lance
import numpy as np
import pyarrow as pa

from ..config import ID_COLUMN, MAX_REPORTED_PROBLEMS, VECTOR_COLUMN
from ..commit import AlreadyCommitted, Change, FragmentSink, WriteJob, WrittenFiles, not_committed
from ..commit.ids import IdIndex, id_keys, run_path, write_run
from ..errors import CommitConflictError, InvalidArgumentError, ValidationError
from .convert import (FileSource, is_path_input, iter_parquet, memory_batches, rename_columns, resolve_files,
                      sources_key)
from .rejects import write_rejects_file
from .schema import first_rows_operation, fix_user_columns, same_columns, table_spec
from .validate import IdTracker, check_batch, format_problems

BAD_ROW_MODES = ("raise", "skip", "quarantine")


@dataclass
class AddResult:
    """What an ingestion did: rows added and rejected, the version it committed, its key."""

    rows_added: int = 0
    rows_rejected: int = 0
    version: int = 0
    key: str | None = None
    skipped: bool = False  # True when the key or sources were already ingested (nothing committed)
    problems: list = field(default_factory=list)  # first bad rows: (source, row, column, reason)
    seconds: float = 0.0
    bytes_written: int = 0  # data bytes of the fragments written
    files_skipped: int = 0  # Parquet source files left out because an earlier ingestion committed them
    ids_read_bytes: int = 0  # bytes of existing id runs read to check uniqueness

    def to_dict(self) -> dict:
        return {"rows_added": self.rows_added, "rows_rejected": self.rows_rejected, "version": self.version,
                "key": self.key, "skipped": self.skipped, "problems": self.problems[:20],
                "seconds": round(self.seconds, 3), "bytes_written": self.bytes_written,
                "files_skipped": self.files_skipped, "ids_read_bytes": self.ids_read_bytes}


def source_hash(src: FileSource) -> str:
    """The name under which a committed source file is remembered in the table's state."""
    return hashlib.sha256(src.identity().encode()).hexdigest()[:40]


def new_sources(state, files: list[FileSource]) -> tuple[list[FileSource], list[FileSource]]:
    """Split ``files`` into (not yet ingested, committed by an earlier ingestion) using the state."""
    new = [f for f in files if source_hash(f) not in state.sources]
    old = [f for f in files if source_hash(f) in state.sources]
    return new, old


def check_args(on_bad_rows, id_column, vector_column, idempotency_key) -> None:
    if on_bad_rows not in BAD_ROW_MODES:
        raise InvalidArgumentError(f"on_bad_rows={on_bad_rows!r}: expected one of {BAD_ROW_MODES}")
    if not isinstance(id_column, str) or not isinstance(vector_column, str):
        raise InvalidArgumentError("id_column and vector_column must be column names (str)")
    if idempotency_key is not None:
        check_key(idempotency_key)


def check_key(key) -> None:
    import re
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.:=-]{1,200}", key):
        raise InvalidArgumentError(f"idempotency_key {key!r} must be 1-200 characters of [A-Za-z0-9_.:=-]")


def skipped_result(version: int, key, t0: float, files_skipped: int = 0) -> AddResult:
    return AddResult(0, 0, int(version), key, skipped=True, seconds=time.time() - t0, files_skipped=files_skipped)


def add(table, data, id_column: str = ID_COLUMN, vector_column: str = VECTOR_COLUMN,
        on_bad_rows: str = "raise", idempotency_key: str | None = None, engine: str = "local",
        check_existing_ids: bool = True, progress=None) -> AddResult:
    """Validate ``data`` and append it to ``table`` in one commit (see Table.add)."""
    from ..progress import progress_for
    t0 = time.time()
    check_args(on_bad_rows, id_column, vector_column, idempotency_key)
    if engine != "local":
        from .distributed import ingest
        return ingest(table, data, engine, id_column=id_column, vector_column=vector_column,
                      on_bad_rows=on_bad_rows, idempotency_key=idempotency_key, check_existing_ids=check_existing_ids,
                      progress=progress)
    with progress_for(progress, "add") as p:
        return _add(table, data, id_column, vector_column, on_bad_rows, idempotency_key, check_existing_ids, t0, p)


def _add(table, data, id_column, vector_column, on_bad_rows, idempotency_key, check_existing_ids, t0, p):
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise InvalidArgumentError(f"input is empty: an empty list has no Parquet paths (no rows to add to "
                                   f"table {table.name!r})")
    files = resolve_files(data, table.lake.storage_options) if is_path_input(data) else None
    state = table.state_of(table._open_latest())
    old: list = []
    if files is not None:
        files, old = new_sources(state, files)
        if not files:  # every file was committed by earlier ingestions
            return skipped_result(state.version, idempotency_key or sources_key(old), t0, len(old))
    key = idempotency_key or (sources_key(files) if files else None)
    if key is not None and key in state.keys:
        return skipped_result(state.version, key, t0, len(files or []) + len(old))
    try:
        with WriteJob(table, "ingest", key) as job:
            if job.done is not None:
                return skipped_result(job.state.version, key, t0, len(files or []) + len(old))
            if files is not None:
                files, more_old = new_sources(job.state, files)
                old += more_old
                if not files:
                    return skipped_result(job.state.version, key, t0, len(old))
                streams = [(f.uri, _file_batches(f, table.lake.storage_options, id_column, vector_column))
                           for f in files]
            else:
                streams = [("input", memory_batches(data, id_column, vector_column))]
            total = sum(f.size for f in files) if files is not None else None
            p.phase("validate+write", total=total, unit="bytes" if files is not None else "rows")
            r = _ingest(table, job, streams, files, on_bad_rows, check_existing_ids, p)
    except AlreadyCommitted as e:
        return skipped_result(e.version, key, t0, len(files or []) + len(old))
    r.key, r.files_skipped, r.seconds = key, len(old), time.time() - t0
    return r


def _file_batches(src: FileSource, storage_options, id_column, vector_column):
    for b in iter_parquet(src, storage_options):
        yield rename_columns(b, id_column, vector_column, src.uri)


def _ingest(table, job: WriteJob, streams, files, on_bad_rows: str, check_existing_ids: bool, p=None) -> AddResult:
    """Validate and write every batch of ``streams`` [(source, batches)], then commit once."""
    ds, state = job.ds, job.state
    spec = table_spec(table, ds)
    id_index = IdIndex(table.store, table.loc, state.runs, spec.id_type) if check_existing_ids else None
    tracker = IdTracker(spec.id_type, id_index)
    sink = None
    snap = None
    first_rows = False
    problems: list = []
    rejects: list = []
    rejected = 0
    seen_rows = 0
    sizes = {f.uri: f.size for f in files or []}
    for source, batches in streams:
        row = 0
        for batch in batches:
            if p is not None and not sizes:
                p.advance(batch.num_rows)
            seen_rows += batch.num_rows
            if batch.num_rows == 0:
                continue
            if sink is None:
                spec, first_rows = fix_user_columns(spec, batch.schema)
                snap = table._snapshot_of(job.ds)
                sink = FragmentSink(table.data_uri, spec.output_schema(), table.lake.lance_options, snap.model,
                                    mode="overwrite" if first_rows else "append", collect_ids=True)
                job.track(sink.out)
            checked = check_batch(batch, spec, row, source, tracker)
            row += batch.num_rows
            if checked.problems:
                rejected += len(checked.problems)
                if len(problems) < 1000:
                    problems += [(source, r, c, why) for r, c, why in checked.problems[:1000]]
                if on_bad_rows == "raise":
                    raise ValidationError(
                        format_problems([(r, c, w) for _, r, c, w in problems], source, MAX_REPORTED_PROBLEMS,
                                        total=rejected)
                        + f"; nothing was written to table {table.name!r}"
                        " (use on_bad_rows='skip' or 'quarantine' to ingest the good rows)",
                        problems=problems, source=source)
                if on_bad_rows == "quarantine":
                    rejects += [(source, r, i, why) for r, i, why in checked.bad_rows]
            if checked.good is not None:
                sink.add(checked.good, checked.vectors)
        if p is not None and source in sizes:
            p.advance(sizes[source])
    if seen_rows == 0:
        what = (f"Parquet source(s) {', '.join(f.uri for f in files[:5])}" if files is not None else "input")
        raise InvalidArgumentError(f"{what} is empty: no rows to add to table {table.name!r}")
    written = sink.finish() if sink is not None else WrittenFiles()
    if p is not None:
        p.phase("commit", detail=f"{written.rows:,} rows, {len(written.fragments):,} fragments")
    result = commit_ingest(table, job, job.state, written, _accepted_ids(sink, tracker), spec, files, rejects,
                           snap.index.index_id if snap is not None and snap.index is not None else None,
                           rejected=rejected, first_rows=first_rows)
    result.problems = [list(p) for p in problems[:MAX_REPORTED_PROBLEMS * 4]]
    result.ids_read_bytes = id_index.bytes_read if id_index is not None else 0
    return result


def _accepted_ids(sink, tracker: IdTracker):
    """The ids of the rows written (the sink's), not of every row the tracker saw (bad rows have ids too)."""
    return sink.ids() if sink is not None else None


def commit_ingest(table, job: WriteJob, state, written: WrittenFiles, ids, spec, files, rejects: list,
                  index_id: str | None, rejected: int = 0, first_rows: bool = False) -> AddResult:
    """Write the id run and rejects file of an ingestion, then commit everything once; return the result.

    Shared by the local and distributed engines and the DataFrame writers. ``first_rows``: the rows were
    written for columns the table does not have yet (see ``ingest.schema``)."""
    id_type = spec.id_type
    if not written.rows and not rejects and not files and job.key is None:
        return AddResult(0, rejected, state.version, None, False, [], 0.0, 0)  # nothing at all to commit
    run = None
    if ids is not None and len(ids):
        run = write_run(table.store, table.loc, run_path(job.txn), ids, id_type)
        job.track_object(run.path)
    rej = None
    if rejects:
        rej = write_rejects_file(table, job.txn, job.key, rejects)
        job.track_object(rej)
    frags = list(written.fragments)
    op = first_rows_operation(frags, spec) if first_rows else lance.LanceOperation.Append(frags)
    info = {"rows": int(written.rows), "rejected": int(rejected), "bytes": int(written.bytes)}
    if first_rows:
        info["columns"] = [f.name for f in spec.user_schema]
    change = Change(op="append", operation=op, files=dict(written.partitions), index_id=index_id,
                    runs_added=[run] if run is not None else [],
                    new_keys=np.unique(id_keys(ids, id_type)) if run is not None else None,
                    sources=[source_hash(f) for f in files or []], rejects=[rej] if rej else [],
                    info=info, exact=first_rows, columns=[f.name for f in spec.user_schema or []])
    what = f"committing rows to table {table.name!r}"
    try:
        res = job.commit(change, state, what)
    except CommitConflictError as e:
        if not (first_rows and not_committed(e) and same_columns(table, spec)):
            raise
        # a concurrent first ingestion set the very same columns: these fragments fit; append them
        change.operation, change.exact = lance.LanceOperation.Append(frags), False
        change.info.pop("columns", None)
        res = job.commit(change, state, what)
    return AddResult(written.rows, rejected, res.version, job.key, False, [], 0.0, written.bytes)


__all__ = ["AddResult", "BAD_ROW_MODES", "add", "check_args", "check_key", "commit_ingest", "new_sources",
           "skipped_result", "source_hash", "table_spec"]
