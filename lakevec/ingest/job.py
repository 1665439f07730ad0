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

import itertools
import time

from ..commit import AlreadyCommitted, FragmentSink, WriteJob, WrittenFiles
from ..commit.ids import IdIndex
from ..config import ID_COLUMN, MAX_REPORTED_PROBLEMS, VECTOR_COLUMN
from ..errors import InvalidArgumentError, ValidationError
from .common import AddResult, check_args, commit_ingest, new_sources, skipped_result
from .convert import (FileSource, is_path_input, iter_parquet, memory_batches, read_ahead, rename_columns, resolve_files,
                      sources_key)
from .schema import fix_user_columns, table_spec
from .validate import IdTracker, check_batch, format_problems


def add(table, data, id_column: str = ID_COLUMN, vector_column: str = VECTOR_COLUMN,
        on_bad_rows: str = "raise", idempotency_key: str | None = None, engine: str = "local",
        check_existing_ids: bool = True, progress=None) -> AddResult:
    """Validate ``data`` and append it to ``table`` in one commit on the local engine (see Table.add)."""
    from ..progress import progress_for
    t0 = time.time()
    check_args(on_bad_rows, id_column, vector_column, idempotency_key)
    with progress_for(progress, "add") as p:
        return _add(table, data, id_column, vector_column, on_bad_rows, idempotency_key, check_existing_ids, t0, p)


def _add(table, data, id_column, vector_column, on_bad_rows, idempotency_key, check_existing_ids, t0, p):
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise InvalidArgumentError(f"input is empty: an empty list has no Parquet paths (no rows to add to "
                                   f"table {table.name!r})")
    files = resolve_files(data, table.lake.storage_options) if is_path_input(data) else None
    ds = table._open_latest()
    state = table.state_of(ds)
    old: list = []
    if files is not None:
        files, old = new_sources(state, files)
        if not files:  # every file was committed by earlier ingestions
            return skipped_result(state.version, idempotency_key or sources_key(old), t0, len(old))
    key = idempotency_key or (sources_key(files) if files else None)
    if key is not None and key in state.keys:
        return skipped_result(state.version, key, t0, len(files or []) + len(old))
    try:
        with WriteJob(table, "ingest", key, ds=ds if key is None else None) as job:
            if job.done is not None:
                return skipped_result(job.state.version, key, t0, len(files or []) + len(old))
            if files is not None:
                files, more_old = new_sources(job.state, files)
                old += more_old
                if not files:
                    return skipped_result(job.state.version, key, t0, len(old))
                opts = table.lake.storage_options
                flat = read_ahead((f.uri, b) for f in files for b in _file_batches(f, opts, id_column, vector_column))
                streams = ((src, (b for _, b in group)) for src, group in itertools.groupby(flat, key=lambda x: x[0]))
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
                                    mode="overwrite" if first_rows else "append", collect_ids=True, dataset=job.ds)
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
    result = commit_ingest(table, job, job.state, written, sink.ids() if sink is not None else None, spec, files, rejects,
                           snap.index.index_id if snap is not None and snap.index is not None else None,
                           rejected=rejected, first_rows=first_rows,
                           on_bad_rows=on_bad_rows)
    result.problems = [list(p) for p in problems[:MAX_REPORTED_PROBLEMS * 4]]
    result.ids_read_bytes = id_index.bytes_read if id_index is not None else 0
    return result


__all__ = ["add"]
