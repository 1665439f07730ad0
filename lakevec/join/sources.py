"""The left side of a join: every accepted input, cut into shards that tasks read on their own.

Accepted: a lakevec Table (any version; pinned when the join starts), Parquet path(s)/glob/folder (local or
s3://), a pyarrow Table / RecordBatch / RecordBatchReader / ``pyarrow.dataset.Dataset``, a pandas
DataFrame, a dict of columns; Spark DataFrames and Ray Datasets are handled by ``frames.py`` (their rows
never pass through the driver).

Shards (``LeftShard``, picklable): fragments of a table version (rows are referred to by their Lance row
address), row-group ranges of a Parquet file, or an Arrow file the driver wrote to scratch from an in-memory
input. Every left row gets a unique int64 reference ``ref``: its row address for a table, else
``shard << 32 | row``. Refs order the results and identify the rows of the recall sample.

Rows are validated as they are read: the id column must exist and hold no nulls; vectors must be non-null,
of the right table's dimension, finite (and non-zero for cosine). Errors name the source and the row.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import ID_COLUMN, VECTOR_COLUMN
from ..errors import InvalidArgumentError, SchemaError, ValidationError
from ..search.reader import vectors_of

SHARD_VECTOR_BYTES = 64 << 20  # left vectors per shard (phase-1 task)
READ_BATCH_ROWS = 65536


@dataclass(frozen=True)
class LeftShard:
    """A picklable slice of the left input."""

    index: int
    kind: str  # "table" | "parquet" | "scratch"
    uri: str  # Lance dataset URI, Parquet file URI or scratch Arrow file URI
    storage_options: dict | None = field(default=None, repr=False)
    version: int | None = None  # table: the version read
    fragment_ids: tuple = ()  # table
    row_groups: tuple | None = None  # parquet: (start, stop)
    id_column: str = ID_COLUMN
    vector_column: str = VECTOR_COLUMN
    filter: str | None = None  # table: SQL predicate (left_filter)
    columns: tuple = ()  # extra left columns to carry to the output
    rows: int = 0  # rows (before the filter), for planning
    source: str = ""  # how messages name the input
    row_base: int = 0  # row number of the shard's first row in its source (for messages)


@dataclass
class LeftBatch:
    ids: pa.Array
    vectors: np.ndarray  # float32 (n, d), C-contiguous
    refs: np.ndarray  # int64 (n,)
    extra: pa.Table | None = None


def iter_shard(shard: LeftShard, dim: int, metric: str):
    """Yield validated LeftBatches of a shard (vectors normalised for cosine)."""
    row = 0
    for batch, refs in _raw_batches(shard):
        n = batch.num_rows
        if not n:
            continue
        if refs is None:
            refs = (np.int64(shard.index) << np.int64(32)) + np.arange(row, row + n, dtype=np.int64)
        ids = _ids_of(batch, shard, shard.row_base + row)
        vec = vector_matrix(batch.column(shard.vector_column if shard.kind == "parquet" else VECTOR_COLUMN),
                            dim, metric, shard.source, shard.row_base + row)
        extra = None
        if shard.columns:
            extra = pa.Table.from_batches([batch]).select(list(shard.columns))
        yield LeftBatch(ids, vec, refs, extra)
        row += n


def _raw_batches(shard: LeftShard):
    """Yield (record batch, refs or None)."""
    if shard.kind == "table":
        from ..store.lance_io import open_dataset
        ds = open_dataset(shard.uri, shard.storage_options, shard.version, what=f"left table {shard.source!r}")
        frags = [ds.get_fragment(f) for f in shard.fragment_ids]
        cols = [ID_COLUMN, VECTOR_COLUMN, *shard.columns]
        try:
            sc = ds.scanner(columns=cols, filter=shard.filter, fragments=frags, with_row_address=True,
                            batch_size=READ_BATCH_ROWS, scan_in_order=True)
            for b in sc.to_batches():
                addr = b.column("_rowaddr").to_numpy().astype(np.int64)
                yield b, addr
        except Exception as e:
            from ..store.objects import wrap_io_error
            raise wrap_io_error(e, f"reading left table {shard.source!r}") from e
        return
    if shard.kind == "parquet":
        from ..ingest.convert import FileSource, iter_parquet
        cols = [shard.id_column, shard.vector_column, *shard.columns]
        src = FileSource(shard.uri, 0)
        for b in iter_parquet(src, shard.storage_options, READ_BATCH_ROWS, columns=cols,
                              row_groups=shard.row_groups):
            yield b, None
        return
    if shard.kind == "scratch":
        from .scratch import ScratchSpec, scratch_store
        store = scratch_store(ScratchSpec(shard.uri.rsplit("/", 1)[0], shard.storage_options))
        buf = pa.py_buffer(store.read_bytes(shard.uri))
        for b in pa.ipc.open_stream(buf):
            yield b, None
        return
    raise InvalidArgumentError(f"unknown left shard kind {shard.kind!r}")


def _ids_of(batch: pa.RecordBatch, shard: LeftShard, row0: int) -> pa.Array:
    name = shard.id_column if shard.kind == "parquet" else ID_COLUMN
    col = batch.column(batch.schema.get_field_index(name))
    return normalize_ids(col, shard.source, row0)


def normalize_ids(col, source: str, row0: int = 0) -> pa.Array:
    """Return ids as int64 or string; nulls are an error naming the row."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValidationError(f"{source}: null id at row {row0 + bad}", [(row0 + bad, "id", "null id")], source)
    t = col.type
    if pa.types.is_integer(t):
        return col.cast(pa.int64()) if t != pa.int64() else col
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.string()) if t != pa.string() else col
    if pa.types.is_dictionary(t):
        return normalize_ids(col.dictionary_decode(), source, row0)
    raise SchemaError(f"{source}: id column has type {t}; expected integers or strings", source=source)


def vector_matrix(col, dim: int, metric: str, source: str, row0: int = 0) -> np.ndarray:
    """Return a validated float32 (n, dim) matrix from a list / fixed-size-list / tensor column."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if isinstance(col.type, pa.ExtensionType):
        col = col.storage
    if col.null_count:
        bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValidationError(f"{source}: null vector at row {row0 + bad}", [(row0 + bad, "vector", "null")], source)
    t = col.type
    if pa.types.is_fixed_size_list(t):
        if t.list_size != dim:
            raise InvalidArgumentError(f"{source}: vectors have dimension {t.list_size}, but the right table "
                                       f"has dimension {dim}")
        vals = col.values.slice(col.offset * dim, n * dim)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(lens != dim)
        if len(wrong):
            r = int(wrong[0])
            raise InvalidArgumentError(f"{source}: vector at row {row0 + r} has dimension {int(lens[r])}, but the "
                                       f"right table has dimension {dim}")
        vals = pc.list_flatten(col)
    else:
        raise SchemaError(f"{source}: vector column has type {t}; expected a list of numbers", source=source)
    if vals.null_count:
        bad = int(np.flatnonzero(vals.is_null().to_numpy(zero_copy_only=False))[0]) // dim
        raise ValidationError(f"{source}: vector at row {row0 + bad} has null elements",
                              [(row0 + bad, "vector", "null elements")], source)
    if not (pa.types.is_floating(vals.type) or pa.types.is_integer(vals.type)):
        raise SchemaError(f"{source}: vector elements have type {vals.type}; expected numbers", source=source)
    x = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, dim)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValidationError(f"{source}: vector at row {row0 + bad} holds NaN or Inf",
                              [(row0 + bad, "vector", "NaN or Inf")], source)
    if metric == "cosine":
        # as ingestion normalises (float64 norms); rows already of unit norm (e.g. read from a cosine table)
        # are kept bit for bit, so a row joined with itself is at distance exactly 0
        nrm = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        if (nrm == 0).any():
            bad = int(np.flatnonzero(nrm[:, 0] == 0)[0])
            raise ValidationError(f"{source}: zero vector at row {row0 + bad} cannot be used with the cosine metric",
                                  [(row0 + bad, "vector", "zero vector")], source)
        redo = np.abs(nrm[:, 0] - 1.0) > 1e-6
        if redo.any():
            x = x.copy()
            x[redo] = (x[redo] / nrm[redo]).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# driver side: what the left input is, its shards, a sample for planning
# --------------------------------------------------------------------------------------------------

@dataclass
class LeftInput:
    """The left side as the driver sees it."""

    kind: str  # "table" | "parquet" | "memory" | "spark" | "ray"
    source: str  # description for messages and the report
    shards: list = field(default_factory=list)
    rows: int | None = None  # known or estimated row count
    table: object = None  # the pinned left Table (kind "table")
    memory: object = None  # in-memory batches source (kind "memory"), written to scratch by ``materialize``
    frame: object = None  # Spark DataFrame / Ray Dataset
    id_column: str = ID_COLUMN
    vector_column: str = VECTOR_COLUMN
    columns: tuple = ()
    id_type: str | None = None  # "int64" | "string" if known
    sample_vectors: np.ndarray | None = None  # up to SAMPLE_ROWS rows for the cost model
    identity: list = field(default_factory=list)  # source identities (Parquet: path, size, mtime/ETag)


PLAN_SAMPLE_ROWS = 2000


def is_table(x) -> bool:
    return hasattr(x, "data_uri") and hasattr(x, "lake") and hasattr(x, "snapshot")


def resolve_left(left, dim: int, metric: str, id_column: str, vector_column: str, left_filter: str | None,
                 columns: tuple, storage_options: dict | None, seed: int = 0) -> LeftInput:
    """Describe ``left`` (not a Spark/Ray frame: see ``frames.resolve_frame``); plan its shards (in-memory
    inputs get theirs in ``materialize``)."""
    if left_filter is not None and not is_table(left):
        raise InvalidArgumentError("left_filter applies to a lakevec table on the left; filter other inputs "
                                   "before the join")
    if is_table(left):
        return _resolve_table(left, dim, left_filter, columns, seed)
    from ..ingest.convert import is_path_input
    if is_path_input(left):
        return _resolve_parquet(left, dim, id_column, vector_column, columns, storage_options, seed)
    return _resolve_memory(left, dim, metric, id_column, vector_column, columns, seed)


def _check_table_columns(schema: pa.Schema, columns: tuple, where: str) -> None:
    names = schema.names
    for c in columns:
        if c not in names:
            raise InvalidArgumentError(f"column {c!r} asked in columns= is not in {where} (columns: {names})")


def _resolve_table(t, dim: int, left_filter, columns: tuple, seed: int) -> LeftInput:
    if t.meta.dim != dim:
        raise InvalidArgumentError(f"left table {t.name!r} has dimension {t.meta.dim}, but the right table has "
                                   f"dimension {dim}")
    ds = t._dataset()
    version = ds.version
    pinned = t if t._pinned is not None else t.checkout(version)
    _check_table_columns(ds.schema, columns, f"left table {t.name!r}")
    if left_filter is not None:
        if not isinstance(left_filter, str) or not left_filter.strip():
            raise InvalidArgumentError(f"left_filter must be a non-empty SQL predicate, got {left_filter!r}")
        try:
            ds.scanner(columns=[ID_COLUMN], filter=left_filter).explain_plan()
        except Exception as e:
            raise InvalidArgumentError(f"invalid left_filter {left_filter!r} for table {t.name!r}: "
                                       f"{str(e).splitlines()[0][:300]}") from e
    frags = ds.get_fragments()
    vec_bytes = dim * 4
    per = max(1, SHARD_VECTOR_BYTES // vec_bytes)
    shards, group, acc = [], [], 0
    total = 0
    for fr in frags:
        n = fr.count_rows()
        total += n
        if group and acc + n > per:
            shards.append((tuple(group), acc))
            group, acc = [], 0
        group.append(fr.fragment_id)
        acc += n
    if group:
        shards.append((tuple(group), acc))
    src = f"left table {t.name!r} (version {version})"
    out = LeftInput("table", src, [LeftShard(i, "table", t.data_uri, t.lake.lance_options, version, fids, None,
                                             filter=left_filter, columns=columns, rows=n, source=src)
                                   for i, (fids, n) in enumerate(shards)],
                    rows=total, table=pinned, columns=columns, id_type=t.meta.id_type)
    if total:
        rng = np.random.default_rng(seed)
        pos = np.sort(rng.choice(total, min(total, PLAN_SAMPLE_ROWS), replace=False))
        s = ds.take(pos.tolist(), columns=[VECTOR_COLUMN])
        out.sample_vectors = np.ascontiguousarray(vectors_of(s.column(VECTOR_COLUMN)), dtype=np.float32)
    return out


def _resolve_parquet(paths, dim: int, id_column: str, vector_column: str, columns: tuple,
                     storage_options, seed: int) -> LeftInput:
    from ..ingest.convert import open_parquet, resolve_files
    files = resolve_files(paths, storage_options)
    shards = []
    total = 0
    desc = f"left Parquet {paths if isinstance(paths, str) else f'({len(files)} files)'}"
    per = max(1, SHARD_VECTOR_BYTES // (dim * 4))
    sample_from = []
    for f in files:
        pf = open_parquet(f, storage_options)
        md = pf.metadata
        names = pf.schema_arrow.names
        for c, role in ((id_column, "id"), (vector_column, "vector")):
            if c not in names:
                raise SchemaError(f"{f.uri}: the left input has no {role} column {c!r} (columns: {names}); "
                                  f"name it with {'id_column' if role == 'id' else 'vector_column'}=",
                                  source=f.uri)
        _check_table_columns(pf.schema_arrow, columns, f"Parquet file {f.uri}")
        vt = pf.schema_arrow.field(vector_column).type
        if pa.types.is_fixed_size_list(vt) and vt.list_size != dim:
            raise InvalidArgumentError(f"{f.uri}: vectors have dimension {vt.list_size}, but the right table has "
                                       f"dimension {dim}")
        start, acc, base = 0, 0, 0
        for g in range(md.num_row_groups):
            n = md.row_group(g).num_rows
            if acc and acc + n > per:
                shards.append((f.uri, (start, g), acc, base))
                start, base, acc = g, base + acc, 0
            acc += n
        if acc or md.num_row_groups == 0:
            shards.append((f.uri, (start, md.num_row_groups), acc, base))
        total += md.num_rows
        if len(sample_from) < 4 and md.num_row_groups:
            sample_from.append((pf, f.uri))
    out = LeftInput("parquet", desc, [LeftShard(i, "parquet", uri, storage_options, None, (), rg, id_column,
                                                vector_column, None, columns, n, uri, base)
                                      for i, (uri, rg, n, base) in enumerate(shards)],
                    rows=total, id_column=id_column, vector_column=vector_column, columns=columns,
                    identity=[f.identity() for f in files])
    # planning sample: rows of the first row group of up to 4 files (only steers the plan choice)
    vecs = []
    for pf, uri in sample_from:
        b = pf.read_row_group(0, columns=[vector_column])
        vecs.append(vector_matrix(b.column(0), dim, "l2", uri)[:PLAN_SAMPLE_ROWS // len(sample_from) + 1])
    if vecs:
        out.sample_vectors = np.concatenate(vecs)[:PLAN_SAMPLE_ROWS]
    return out


def _resolve_memory(left, dim: int, metric: str, id_column: str, vector_column: str, columns: tuple,
                    seed: int) -> LeftInput:
    import pyarrow.dataset as pads

    from ..ingest.convert import to_arrow_table
    if isinstance(left, np.ndarray):
        raise InvalidArgumentError("a bare array has no ids: pass {'id': ids, 'vector': array} as the left side")
    if isinstance(left, pads.Dataset):
        reader = left.scanner(columns=None).to_reader()
        out = LeftInput("memory", "left pyarrow dataset", memory=reader, rows=left.count_rows(),
                        id_column=id_column, vector_column=vector_column, columns=columns)
        schema = left.schema
    elif isinstance(left, pa.RecordBatchReader):
        out = LeftInput("memory", "left record batch reader", memory=left, id_column=id_column,
                        vector_column=vector_column, columns=columns)
        schema = left.schema
    else:
        tbl = to_arrow_table(left, vector_column)
        out = LeftInput("memory", f"left {type(left).__name__}", memory=tbl, rows=tbl.num_rows,
                        id_column=id_column, vector_column=vector_column, columns=columns)
        schema = tbl.schema
    names = schema.names
    for c, role in ((id_column, "id"), (vector_column, "vector")):
        if c not in names:
            raise SchemaError(f"{out.source}: the left input has no {role} column {c!r} (columns: {names}); "
                              f"name it with {'id_column' if role == 'id' else 'vector_column'}=", source=out.source)
    _check_table_columns(schema, columns, out.source)
    vt = schema.field(vector_column).type
    if pa.types.is_fixed_size_list(vt) and vt.list_size != dim:
        raise InvalidArgumentError(f"{out.source}: vectors have dimension {vt.list_size}, but the right table has "
                                   f"dimension {dim}")
    if isinstance(out.memory, pa.Table) and out.memory.num_rows:
        rng = np.random.default_rng(seed)
        n = out.memory.num_rows
        pos = np.sort(rng.choice(n, min(n, PLAN_SAMPLE_ROWS), replace=False))
        col = out.memory.column(vector_column).take(pa.array(pos))
        out.sample_vectors = vector_matrix(col, dim, "l2", out.source)
    return out


def materialize(left: LeftInput, scratch, dim: int) -> None:
    """Write an in-memory left input to scratch as Arrow files of about SHARD_VECTOR_BYTES each."""
    if left.kind != "memory":
        return
    from .scratch import scratch_store
    store = scratch_store(scratch)
    per = max(1, SHARD_VECTOR_BYTES // (dim * 4))
    src = left.memory
    batches = src.to_batches(max_chunksize=READ_BATCH_ROWS) if isinstance(src, pa.Table) else src
    keep = [left.id_column, left.vector_column, *left.columns]
    shards: list[LeftShard] = []
    pending: list = []
    acc = 0
    total = 0

    def flush():
        nonlocal pending, acc
        if not pending:
            return
        i = len(shards)
        uri = scratch.join(f"left-{i:06d}.arrow")
        tbl = pa.Table.from_batches(pending)
        tbl = tbl.rename_columns([ID_COLUMN if c == left.id_column else VECTOR_COLUMN if c == left.vector_column
                                  else c for c in tbl.column_names])
        from .scratch import _ipc_bytes
        store.write_bytes(uri, _ipc_bytes(tbl))
        shards.append(LeftShard(i, "scratch", uri, scratch.storage_options, columns=left.columns, rows=acc,
                                source=left.source, row_base=total - acc))
        pending, acc = [], 0

    for b in batches:
        b = b.select(keep) if isinstance(b, pa.RecordBatch) else b
        if left.id_column == left.vector_column:
            raise InvalidArgumentError("id_column and vector_column must differ")
        for s in range(0, b.num_rows, per):
            piece = b.slice(s, min(per, b.num_rows - s))
            if acc and acc + piece.num_rows > per:
                flush()
            pending.append(piece)
            acc += piece.num_rows
            total += piece.num_rows
    flush()
    left.shards = shards
    left.rows = total
