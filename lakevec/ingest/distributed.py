"""Distributed ingestion: Parquet sources (or Spark/Ray partitions) validated and written in engine tasks,
checked across tasks and committed once by the driver.

Plan. ``plan_slices`` turns the source files into ``SliceTask`` records: a file larger than the task
size is cut into row-group ranges, consecutive small files are grouped (so that tasks, and the
fragments they write, are not tiny). The task size gives every core about one task
(``engine.task_bytes``). Task records hold URIs, row-group ranges and the table spec, never data.

Tasks (``run_slice_task``; ``ingest_stream`` is shared with ``lakevec.spark.write`` and
``lakevec.ray.write``) read their slice, rename the id/vector columns, validate every batch with
``ingest.validate.check_batch`` (the very function and batches of the local engine, so messages are
identical), write the good rows with ``ingest.write.FragmentSink`` (one partition per fragment when
the table is indexed: the task loads the centroids of the index in force) and return
``StreamResult``: the fragments written (uncommitted), and per batch the ids it checked with their
row numbers and the row problems it found. Duplicates inside a task are dropped there.
A lakevec error that is not about rows (schema drift, missing column) is returned in the result,
so the driver reports errors in source order, as the local engine would.

Driver (``finalize``). It replays the tasks' ids, in source order, through one ``IdTracker`` loaded
with the table's ids: exactly the sequence of checks the local engine makes, so duplicates across
tasks and against the table get the local engine's messages and first-wins choice. Then:
``on_bad_rows="raise"``: the first batch with a problem raises the local engine's ``ValidationError``
after every written file is deleted; ``"skip"``/``"quarantine"``: rows found to be duplicates only
across tasks were already written, so the fragments holding them are rewritten without them
(``run_rewrite_task``) before the commit. Finally one commit through ``ingest.common.commit_ingest``
(pending record, partition-map sidecar, Lance Append/Overwrite, committed record). The idempotency
key is the given one or ``convert.sources_key(files)``; a re-run with a committed key commits nothing.

Exactly-once: every task result is taken once per task (see ``engines.base``); attempts that failed
or were duplicated by the engine leave uncommitted files that ``maintenance.vacuum`` deletes; a
driver that dies before the commit leaves the table unchanged.
"""
from __future__ import annotations

import io
import logging
import pickle
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..commit import AlreadyCommitted, FragmentSink, WriteJob, WrittenFiles, delete_written
from ..commit.fragments import rewrite_without_ids
from ..commit.ids import IdIndex
from ..config import ID_COLUMN, INDEX_DIR, INGEST_BATCH_ROWS, MAX_REPORTED_PROBLEMS, VECTOR_COLUMN
from ..errors import InvalidArgumentError, LakevecError, StorageError, ValidationError
from ..index.ivf import IvfModel
from ..store.location import parse_location
from ..store.objects import ObjectStore
from .common import check_args, commit_ingest, new_sources, skipped_result
from .convert import FileSource, open_parquet, is_path_input, iter_parquet, rename_columns, resolve_files, sources_key
from .validate import IdTracker, TableSpec, check_batch, format_problems

log = logging.getLogger("lakevec.ingest")

INGEST_TASK_BYTES = 512 << 20  # most source bytes one task reads (distributed engines split below this)
MIN_TASK_BYTES = 32 << 20  # smaller slices cost more in task overhead and tiny fragments than they gain


# --------------------------------------------------------------------------------------------------
# task records and results
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestTarget:
    """Where and how tasks write: table location, validation spec, index, bad-row mode (picklable)."""

    table_name: str
    table_uri: str
    data_uri: str
    lance_options: dict | None
    spec: TableSpec
    mode: str  # "append" | "overwrite" (the first rows of a table set its columns: see ingest.schema)
    on_bad_rows: str
    id_column: str = ID_COLUMN
    vector_column: str = VECTOR_COLUMN
    index_id: str | None = None
    flush_bytes: int | None = None

    def model(self) -> IvfModel | None:
        """Load the centroids of the index in force (None for an unindexed table)."""
        if self.index_id is None:
            return None
        store = ObjectStore(parse_location(self.table_uri, self.lance_options))
        raw = store.read_bytes(f"{self.table_uri.rstrip('/')}/{INDEX_DIR}/{self.index_id}.centroids.npy")
        return IvfModel(np.load(io.BytesIO(raw), allow_pickle=False), self.spec.metric)

    def sink(self, model: IvfModel | None) -> FragmentSink:
        kw = {"flush_bytes": self.flush_bytes} if self.flush_bytes else {}
        return FragmentSink(self.data_uri, self.spec.output_schema(), self.lance_options, model, mode=self.mode,
                            collect_ids=True, **kw)

    def store(self) -> ObjectStore:
        return ObjectStore(parse_location(self.table_uri, self.lance_options))


@dataclass(frozen=True)
class FilePart:
    """One source file, or the row groups [start, stop) of it."""

    source: FileSource
    row_groups: tuple | None = None


@dataclass(frozen=True)
class SliceTask:
    """Read, validate and write some Parquet files / row-group ranges (in order)."""

    task_id: int
    parts: tuple  # of FilePart
    source_options: dict | None  # resolved storage options to read the sources
    target: IngestTarget


@dataclass
class BatchRecord:
    """What the driver needs of one validated batch: the ids the tracker saw and the row problems."""

    source: str
    first_row: int
    num_rows: int
    ids: np.ndarray  # non-null ids of the batch, as passed to IdTracker.check
    rows: np.ndarray | None  # their row numbers (int64, ascending); None when no id is null: every row
    problems: list  # [(row, column, reason)] found by the task (incl. duplicates within the task)

    def id_rows(self) -> np.ndarray:
        if self.rows is not None:
            return self.rows
        return np.arange(self.first_row, self.first_row + len(self.ids), dtype=np.int64)


@dataclass
class StreamResult:
    """A task's outcome: fragments written (not committed), per-batch ids/problems, or its error."""

    task_id: int
    written: WrittenFiles = field(default_factory=WrittenFiles)
    batches: list = field(default_factory=list)
    rows_read: int = 0
    row_base: int = 0  # added to every row number by the driver (Spark/Ray partitions)
    error: bytes | None = None  # a pickled LakevecError that stopped the task (reported in order)
    seconds: float = 0.0
    good_ids: list = field(default_factory=list)  # ids of the rows written (one array per batch)

    def raise_error(self) -> None:
        if self.error is not None:
            raise pickle.loads(self.error)


class _RecordingTracker(IdTracker):
    """An IdTracker that remembers the (ids, rows) of its last check (what the driver replays)."""

    def __init__(self, id_type: str):
        super().__init__(id_type, None)
        self.last = None

    def check(self, ids, rows):
        self.last = (np.asarray(ids).copy() if self.id_type == "int64" else np.asarray(ids, dtype=object),
                     np.asarray(rows, dtype=np.int64).copy())
        return super().check(ids, rows)


# --------------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------------

def ingest_stream(batches, target: IngestTarget, task_id: int, model: IvfModel | None = None,
                  result: StreamResult | None = None) -> StreamResult:
    """Validate and write ``batches`` (an iterable of (source, first_row, RecordBatch with canonical
    column names)); return what was written and what the driver must check."""
    t0 = time.time()
    res = result or StreamResult(task_id)
    tracker = _RecordingTracker(target.spec.id_type)
    sink = target.sink(model)
    try:
        for source, row, batch in batches:
            res.rows_read += batch.num_rows
            if batch.num_rows == 0:
                continue
            tracker.last = None
            checked = check_batch(batch, target.spec, row, source, tracker)
            ids, rows = tracker.last if tracker.last is not None else (np.empty(0, np.int64), np.empty(0, np.int64))
            if len(ids) == batch.num_rows:  # no null id: the rows are first_row, first_row + 1, ...
                rows = None
            res.batches.append(BatchRecord(source, row, batch.num_rows, ids, rows, list(checked.problems)))
            if checked.problems and target.on_bad_rows == "raise":
                # the job fails at this batch at the latest: write nothing more, keep nothing
                delete_written(target.store(), target.data_uri, sink.out)
                res.written = WrittenFiles()
                res.seconds = time.time() - t0
                return res
            if checked.good is not None:
                sink.add(checked.good, checked.vectors)
        res.written = sink.finish()
        res.good_ids = [sink.ids()]
    except LakevecError as e:
        delete_written(target.store(), target.data_uri, sink.out)
        if isinstance(e, StorageError):
            raise  # maybe transient: let the engine retry the task
        res.written = WrittenFiles()
        res.error = pickle.dumps(e)
    except BaseException:
        delete_written(target.store(), target.data_uri, sink.out)
        raise
    res.seconds = time.time() - t0
    return res


def _iter_part(part: FilePart, options: dict | None, id_column: str, vector_column: str):
    """Yield (source, first_row, batch) of one file part (``convert.iter_parquet``: resumable reads).

    Batches are cut exactly as the local engine cuts them (row group by row group, INGEST_BATCH_ROWS),
    so row numbers and validation messages are identical.
    """
    src = part.source
    for row, b in iter_parquet(src, options, INGEST_BATCH_ROWS, row_groups=part.row_groups, with_rows=True):
        yield src.uri, row, rename_columns(b, id_column, vector_column, src.uri)


def run_slice_task(task: SliceTask) -> StreamResult:
    """Engine task: read this task's file parts, validate, write fragments (see module doc)."""
    t = task.target
    res = StreamResult(task.task_id)
    try:
        model = t.model()
    except LakevecError as e:
        if isinstance(e, StorageError):
            raise
        res.error = pickle.dumps(e)
        return res

    def batches():
        for part in task.parts:
            yield from _iter_part(part, task.source_options, t.id_column, t.vector_column)

    return ingest_stream(batches(), t, task.task_id, model, res)


@dataclass(frozen=True)
class RewriteTask:
    """Rewrite uncommitted fragments without the rows of the given ids (cross-task duplicates)."""

    task_id: int
    data_uri: str
    table_uri: str
    lance_options: dict | None
    schema: pa.Schema
    mode: str
    fragments: tuple  # FragmentMetadata written by one task
    partitions: dict  # data file name -> partition
    drop_ids: tuple


def run_rewrite_task(task: RewriteTask) -> WrittenFiles:
    """Engine task: copy each fragment without the dropped ids; delete the old (never committed) files."""
    return rewrite_without_ids(task.data_uri, task.lance_options, task.schema, task.mode, task.fragments,
                               task.partitions, task.drop_ids)


# --------------------------------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------------------------------

def plan_slices(files: list[FileSource], source_options: dict | None, target: IngestTarget,
                task_bytes: int) -> list[SliceTask]:
    """Cut files larger than ``task_bytes`` into row-group ranges; group consecutive small files."""
    parts: list[tuple[FilePart, int]] = []
    for src in files:
        if src.size <= task_bytes:
            parts.append((FilePart(src, None), src.size))
            continue
        md = open_parquet(src, source_options).metadata
        start, acc = 0, 0
        for g in range(md.num_row_groups):
            gb = md.row_group(g).total_byte_size
            if g > start and acc + gb > task_bytes:
                parts.append((FilePart(src, (start, g)), acc))
                start, acc = g, 0
            acc += gb
        if md.num_row_groups == 0 or start < md.num_row_groups:
            parts.append((FilePart(src, (start, md.num_row_groups)), acc))
    tasks: list[list[FilePart]] = [[]]
    acc = 0
    for part, size in parts:
        if tasks[-1] and (acc + size > task_bytes or part.row_groups is not None):
            tasks.append([])
            acc = 0
        tasks[-1].append(part)
        acc += size
        if part.row_groups is not None:  # a slice of a big file is a task of its own
            tasks.append([])
            acc = 0
    return [SliceTask(i, tuple(p), source_options, target) for i, p in enumerate(t for t in tasks if t)]


@dataclass
class Outcome:
    """The driver's merge of all task results."""

    written: WrittenFiles
    rejected: int = 0
    problems: list = field(default_factory=list)  # first problems (source, row, column, reason)
    rejects: list = field(default_factory=list)  # quarantined rows (source, row, id, reason)
    drops: dict = field(default_factory=dict)  # result position -> ids to drop from its fragments
    rows_read: int = 0


def _is_dup_reason(column: str, why: str) -> bool:
    return column == ID_COLUMN and why.startswith("duplicate id")


def merge_results(results: list[StreamResult], spec: TableSpec, existing, on_bad_rows: str,
                  table_name: str) -> Outcome:
    """Replay the tasks' ids in order through one IdTracker; apply ``on_bad_rows`` (see module doc).

    Raises the local engine's ValidationError (raise mode) or a task's own error, in source order.
    """
    vectorised = spec.id_type == "int64"
    tracker = _IntDuplicates(results, existing) if vectorised else IdTracker(spec.id_type, existing)
    out = Outcome(WrittenFiles())
    for pos, res in enumerate(results):
        out.rows_read += res.rows_read
        base = res.row_base
        for bi, b in enumerate(res.batches):
            rows = b.id_rows() + base if base else b.id_rows()
            if vectorised:
                dup = tracker.batch(pos, bi)
            else:
                dup = tracker.check(b.ids, rows) if len(b.ids) else {}
            final: dict[int, tuple[str, str]] = {}
            for r, c, w in b.problems:
                r = int(r) + base
                if _is_dup_reason(c, w) and r in dup:
                    final[r] = (ID_COLUMN, dup[r])  # the driver sees earlier tasks too: its wording wins
                else:
                    final[r] = (c, w)
            cross = [r for r in dup if r not in final]
            for r in cross:
                final[r] = (ID_COLUMN, dup[r])
            if not final:
                continue
            ordered = sorted(final)
            batch_problems = [(r, final[r][0], final[r][1]) for r in ordered]
            out.rejected += len(batch_problems)
            if len(out.problems) < 1000:
                out.problems += [(b.source, r, c, w) for r, c, w in batch_problems[:1000]]
            if on_bad_rows == "raise":
                raise ValidationError(
                    format_problems([(r, c, w) for _, r, c, w in out.problems], b.source, MAX_REPORTED_PROBLEMS,
                                    total=out.rejected)
                    + f"; nothing was written to table {table_name!r}"
                    " (use on_bad_rows='skip' or 'quarantine' to ingest the good rows)",
                    problems=out.problems, source=b.source)
            id_of = _id_lookup(b.ids, rows)
            if on_bad_rows == "quarantine":
                out.rejects += [(b.source, r, id_of(r), f"{c}: {w}") for r, c, w in batch_problems]
            if cross:
                out.drops.setdefault(pos, []).extend(_id_value(id_of(r), spec.id_type) for r in cross)
        res.raise_error()
        out.written.extend(res.written)
    return out


class _IntDuplicates:
    """The verdicts ``IdTracker.check`` would give batch after batch, computed at once for integer ids.

    Over all ids in order (sources, then batches): an id already in the table is a duplicate "already in
    the table" wherever it occurs; otherwise its first occurrence is kept and every later one is
    "duplicate id <v> (also at row <row of the first>)". One stable sort instead of a per-batch replay:
    the driver's share of a distributed ingestion stays small next to the tasks' work.
    """

    def __init__(self, results: list, existing):
        ids, rows, self._slices = [], [], {}
        n = 0
        for pos, res in enumerate(results):
            for bi, b in enumerate(res.batches):
                k = len(b.ids)
                self._slices[(pos, bi)] = (n, n + k)
                if k:
                    ids.append(np.asarray(b.ids, dtype=np.int64))
                    rows.append(b.id_rows() + res.row_base)
                n += k
        self.ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        self.rows = np.concatenate(rows) if rows else np.empty(0, np.int64)
        if existing is not None and len(self.ids):
            self.in_table = existing.contains(self.ids)  # an IdIndex: reads only the runs that can overlap
        else:
            self.in_table = np.zeros(len(self.ids), dtype=bool)
        order = np.argsort(self.ids, kind="stable")  # equal ids keep their order: the first comes first
        s = self.ids[order]
        run_start = np.r_[True, s[1:] != s[:-1]] if len(s) else np.zeros(0, dtype=bool)
        start_pos = np.maximum.accumulate(np.where(run_start, np.arange(len(s)), 0)) if len(s) else s
        self.first = np.empty(len(s), dtype=np.int64)
        self.first[order] = order[start_pos]  # index of the first occurrence of each element's id
        self.flagged = self.in_table | (self.first != np.arange(len(s)))

    def batch(self, pos: int, bi: int) -> dict[int, str]:
        lo, hi = self._slices[(pos, bi)]
        out: dict[int, str] = {}
        for i in lo + np.flatnonzero(self.flagged[lo:hi]):
            v = int(self.ids[i])
            if self.in_table[i]:
                out[int(self.rows[i])] = f"duplicate id {v}: already in the table"
            else:
                out[int(self.rows[i])] = f"duplicate id {v} (also at row {int(self.rows[self.first[i]])})"
        return out


def _id_lookup(ids: np.ndarray, rows: np.ndarray):
    def get(r: int) -> str:
        i = int(np.searchsorted(rows, r))
        if i < len(rows) and rows[i] == r:
            v = ids[i]
            return str(v.item() if hasattr(v, "item") else v)
        return ""  # a null id
    return get


def _id_value(text: str, id_type: str):
    return int(text) if id_type == "int64" else text


def rewrite_dropped(engine, results: list[StreamResult], drops: dict, target: IngestTarget) -> list[StreamResult]:
    """Rewrite the fragments of results that hold cross-task duplicates; return updated results."""
    if not drops:
        return results
    schema = target.spec.output_schema()
    tasks = [RewriteTask(pos, target.data_uri, target.table_uri, target.lance_options, schema, target.mode,
                         tuple(results[pos].written.fragments), dict(results[pos].written.partitions),
                         tuple(ids))
             for pos, ids in sorted(drops.items())]
    log.info("ingest: rewriting the fragments of %d task(s) without %d cross-task duplicate(s)", len(tasks),
             sum(len(t.drop_ids) for t in tasks))
    from ..engines import get_engine
    rewritten = get_engine(engine).map(run_rewrite_task, tasks, name="ingest-dedup")
    out = list(results)
    for t, w in zip(tasks, rewritten):
        r = out[t.task_id]
        out[t.task_id] = StreamResult(r.task_id, w, r.batches, r.rows_read, r.row_base, r.error, r.seconds,
                                      _without(r.good_ids, t.drop_ids))
    return out


def _without(good_ids: list, drop) -> list:
    """Return the per-batch id arrays without the ids in ``drop``."""
    if not drop:
        return good_ids
    d = set(drop)
    return [a[np.fromiter((x not in d for x in a.tolist()), dtype=bool, count=len(a))] for a in good_ids]


def make_target(table, snap, spec: TableSpec, first_rows: bool, on_bad_rows: str, id_column: str,
                vector_column: str) -> IngestTarget:
    return IngestTarget(table.name, table.loc.uri, table.data_uri, table.lake.lance_options, spec,
                        "overwrite" if first_rows else "append", on_bad_rows, id_column, vector_column,
                        snap.index.index_id if snap.index is not None else None)


def existing_ids(table, state, check_existing_ids: bool = True):
    """Return the IdIndex of the version read (None when the ingestion does not check ids)."""
    if not check_existing_ids:
        return None
    return IdIndex(table.store, table.loc, state.runs, table.meta.id_type)


def finalize(table, job: WriteJob, engine, results: list[StreamResult], target: IngestTarget, existing,
             t0: float, empty_what: str, sources: list | None = None, files_skipped: int = 0):
    """Merge task results, apply on_bad_rows, rewrite cross-task duplicates, commit once; return AddResult.

    ``sources``: the Parquet files ingested (committed with the rows, like the local engine does)."""
    for r in results:
        job.track(r.written)
    if sum(r.rows_read for r in results) == 0:
        raise InvalidArgumentError(f"{empty_what} is empty: no rows to add to table {table.name!r}")
    out = merge_results(results, target.spec, existing, target.on_bad_rows, table.name)
    if out.drops:
        results = rewrite_dropped(engine, results, out.drops, target)
        out.written = WrittenFiles()
        for r in results:
            out.written.extend(r.written)
            job.track(r.written)
    chunks = [a for r in results for a in r.good_ids if len(a)]
    ids = np.concatenate(chunks) if chunks else None
    res = commit_ingest(table, job, job.state, out.written, ids, target.spec, sources, out.rejects,
                        target.index_id, rejected=out.rejected, first_rows=target.mode == "overwrite",
                        on_bad_rows=target.on_bad_rows)
    log.info("ingest: %d rows added, %d rejected, version %s (%.1fs)", res.rows_added, out.rejected, res.version,
             time.time() - t0)
    res.problems = [list(p) for p in out.problems[:MAX_REPORTED_PROBLEMS * 4]]
    res.seconds = time.time() - t0
    res.files_skipped = files_skipped
    res.ids_read_bytes = existing.bytes_read if existing is not None else 0
    return res


def frame_write(table, schema: pa.Schema, source: str, run, id_column: str, vector_column: str,
                on_bad_rows: str, idempotency_key: str | None, storage_options: dict | None,
                check_existing_ids: bool, engine):
    """Write a Spark DataFrame / Ray Dataset: ``run(target) -> [StreamResult]`` executes the tasks.

    Opens a WriteJob (lease, key claim), fixes the user columns from ``schema`` (the frame's Arrow schema),
    plans the tasks' target, runs them and commits once."""
    from .schema import fix_user_columns, table_spec
    t0 = time.time()
    table._check_writable()
    check_args(on_bad_rows, id_column, vector_column, idempotency_key)
    key = idempotency_key
    try:
        with WriteJob(table, "ingest", key) as job:
            if job.done is not None:
                log.info("ingest: key %s already committed (version %s): nothing to do", key, job.done)
                return skipped_result(job.state.version, key, t0)
            spec, first_rows = fix_user_columns(table_spec(table, job.ds),
                                                _renamed_schema(schema, id_column, vector_column, source))
            snap = table._snapshot_of(job.ds)
            target = make_target(table, snap, spec, first_rows, on_bad_rows, id_column, vector_column)
            existing = existing_ids(table, job.state, check_existing_ids)
            results = run(target)
            return finalize(table, job, engine, results, target, existing, t0, source)
    except AlreadyCommitted as e:
        return skipped_result(e.version, key, t0)


def _renamed_schema(schema: pa.Schema, id_column: str, vector_column: str, where: str) -> pa.Schema:
    empty = pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)
    return rename_columns(empty, id_column, vector_column, where).schema


def session(engine):
    """``with session(engine):`` keeps a distributed engine's cluster up across several maps."""
    import contextlib
    return engine if hasattr(engine, "__enter__") else contextlib.nullcontext(engine)


def _source_options(files: list[FileSource], storage_options: dict | None) -> dict | None:
    """Resolve S3 credentials on the driver, so that workers need no AWS environment of their own."""
    s3 = [f for f in files if f.uri.startswith(("s3://", "s3a://"))]
    if not s3:
        return storage_options
    return parse_location(s3[0].uri.replace("s3a://", "s3://"), storage_options).options  # a SecretDict


def ingest(table, data, engine, id_column: str = ID_COLUMN, vector_column: str = VECTOR_COLUMN,
           on_bad_rows: str = "raise", idempotency_key: str | None = None, check_existing_ids: bool = True,
           task_bytes: int | None = None, progress=None):
    """``Table.add(parquet sources, engine=...)`` for a distributed engine (see module doc): the sources
    (Parquet path(s)/glob/folder, local or s3://) are read inside the tasks."""
    from ..engines import engine_name, get_engine, task_bytes_for
    from .schema import fix_user_columns, table_spec
    t0 = time.time()
    check_args(on_bad_rows, id_column, vector_column, idempotency_key)
    if not is_path_input(data):
        raise InvalidArgumentError(f"distributed ingestion reads Parquet sources (paths, globs, folders); got "
                                   f"{type(data).__name__} (Table.add ingests in-memory data on the driver)")
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise InvalidArgumentError(f"input is empty: an empty list has no Parquet paths (no rows to add to "
                                   f"table {table.name!r})")
    files = resolve_files(data, table.lake.storage_options)
    state = table.state_of(table._open_latest())
    files, old_files = new_sources(state, files)  # files committed by earlier ingestions are left out
    if not files:
        return skipped_result(state.version, idempotency_key or sources_key(old_files), t0, len(old_files))
    key = idempotency_key or sources_key(files)
    if key in state.keys:
        return skipped_result(state.version, key, t0, len(files) + len(old_files))
    eng = get_engine(engine)
    try:
        with WriteJob(table, "ingest", key) as job:
            if job.done is not None:
                log.info("ingest: key %s already committed (version %s): nothing to do", key, job.done)
                return skipped_result(job.state.version, key, t0, len(files) + len(old_files))
            files, more_old = new_sources(job.state, files)
            old_files += more_old
            if not files:
                return skipped_result(job.state.version, key, t0, len(old_files))
            spec = table_spec(table, job.ds)
            src_opts = _source_options(files, table.lake.storage_options)
            first_rows = False
            if spec.user_schema is None:
                first = next((f for f in files if open_parquet(f, src_opts).metadata.num_rows > 0), None)
                if first is not None:
                    spec, first_rows = fix_user_columns(spec, _renamed_schema(
                        open_parquet(first, src_opts).schema_arrow, id_column, vector_column, first.uri))
                else:
                    spec = TableSpec(spec.name, spec.dim, spec.metric, spec.id_type, pa.schema([]))
            snap = table._snapshot_of(job.ds)
            target = make_target(table, snap, spec, first_rows, on_bad_rows, id_column, vector_column)
            total = sum(f.size for f in files)
            tb = task_bytes or task_bytes_for(eng, total, INGEST_TASK_BYTES, MIN_TASK_BYTES)
            tasks = plan_slices(files, src_opts, target, tb)
            existing = existing_ids(table, job.state, check_existing_ids)
            log.info("ingest: %d file(s), %.1f MB, %d task(s) on %s into table %r (version %d)", len(files),
                     total / 1e6, len(tasks), engine_name(eng), table.name, job.state.version)
            from ..progress import progress_for
            with session(eng), progress_for(progress, "add") as p:
                # a task that fails cleans up its own files; files of crashed attempts are left to vacuum
                p.phase("tasks", total=len(tasks), unit="tasks", detail=f"{total / 1e6:,.1f} MB on {engine_name(eng)}")
                results = eng.map(run_slice_task, tasks, name="ingest")
                p.advance(len(tasks))
                p.phase("commit")
                return finalize(table, job, eng, results, target, existing, t0,
                                f"Parquet source(s) {', '.join(f.uri for f in files[:5])}", sources=files,
                                files_skipped=len(old_files))
    except AlreadyCommitted as e:
        return skipped_result(e.version, key, t0, len(files) + len(old_files))
