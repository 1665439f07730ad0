"""What the local and distributed ingestion paths share: argument checks, the result, source-file identity,
and ``commit_ingest``, the one place an ingestion builds its ``commit.Change`` and commits."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import lance
import numpy as np

from ..arrays import unique
from ..commit import Change, WriteJob, WrittenFiles, not_committed
from ..commit.ids import id_keys, run_path, write_run
from ..errors import CommitConflictError, InvalidArgumentError
from .convert import FileSource
from .rejects import write_rejects_file
from .schema import first_rows_operation, same_columns

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


def commit_ingest(table, job: WriteJob, state, written: WrittenFiles, ids, spec, files, rejects: list,
                  index_id: str | None, rejected: int = 0, first_rows: bool = False,
                  on_bad_rows: str = "raise") -> AddResult:
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
                    new_keys=unique(id_keys(ids, id_type)) if run is not None else None,
                    sources=[source_hash(f) for f in files or []], rejects=[rej] if rej else [],
                    info=info, exact=first_rows, columns=[f.name for f in spec.user_schema or []],
                    on_duplicate="raise" if on_bad_rows == "raise" else "drop")
    dropped = [0]

    def drop_ids(keys) -> int:
        """Rewrite the written fragments without the rows whose id keys ``keys`` another writer committed."""
        nonlocal written
        from ..commit.fragments import rewrite_without_ids
        bad = set(keys.tolist())
        all_keys = id_keys(ids, id_type)
        gone = [i for i, k in zip(ids, all_keys.tolist()) if k in bad]
        mode = "overwrite" if first_rows else "append"
        new = rewrite_without_ids(table.data_uri, table.lake.lance_options, spec.output_schema(), mode,
                                  written.fragments, written.partitions, gone)
        job.track(new)
        n = written.rows - new.rows
        written = new
        keep = ~np.isin(all_keys, keys)
        kept_ids = ids[keep]
        frags2 = list(new.fragments)
        change.operation = first_rows_operation(frags2, spec) if first_rows else lance.LanceOperation.Append(frags2)
        change.files = dict(new.partitions)
        if len(kept_ids):
            run2 = write_run(table.store, table.loc, run_path(job.txn, 1 + dropped[0]), kept_ids, id_type)
            job.track_object(run2.path)
            change.runs_added = [run2]
            change.new_keys = unique(id_keys(kept_ids, id_type))
        else:
            change.runs_added, change.new_keys = [], None
        change.info.update(rows=int(new.rows), bytes=int(new.bytes))
        dropped[0] += n
        return n

    change.drop_ids = drop_ids
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
    # rows of ids that a concurrent commit added first were deleted again (see commit.protocol): rejected
    gone = res.compensated_rows + dropped[0]
    return AddResult(written.rows - res.compensated_rows, rejected + gone, res.version, job.key, False, [], 0.0,
                     written.bytes)
