"""Spark DataFrame integration: write a DataFrame into a lakevec table, read a table as a DataFrame.

    import lakevec.spark as lvs
    r = lvs.write(df, table)                         # df: id, vector (array<float>), other columns
    df = lvs.read(table, columns=["id", "tag"], filter="tag = 3")

``table`` is a ``lakevec`` Table or a table URI ``"<lake uri>/<table name>"`` (pass
``storage_options`` for S3, or rely on the AWS_* environment).

write: one Spark task per DataFrame partition (``mapInArrow``): the task converts the vectors
(Spark ``array<float>``/``array<double>``, an Arrow list) to fixed-size float32 lists, validates every
batch with the local engine's checks, writes Lance fragments (one partition each when the table is
indexed) and emits one small row: its partition number and its pickled result (fragment metadata,
ids, row problems). The driver collects one row per partition (a retried or speculative attempt
yields one collected row as well: exactly once), checks duplicates across partitions and against
the table, applies ``on_bad_rows`` and commits once (see ``lakevec.ingest.distributed``). Rows are
numbered in DataFrame order (partition by partition) in error messages. Re-running with the same
``idempotency_key`` commits nothing. Files of failed attempts are removed by ``vacuum``.

read: one Spark task per group of fragments (about ``task_bytes`` each) reads with Lance in Python
at the version current when ``read`` was called (or ``version``); ``filter`` (a SQL predicate on
the table's columns) is applied by Lance inside the tasks; vectors come back as ``array<float>``.
No Hadoop S3 connector is involved.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import pyarrow as pa

from .config import ID_COLUMN, PARTITION_COLUMN, VECTOR_COLUMN
from .errors import EngineError, InvalidArgumentError
from .ingest.distributed import IngestTarget, StreamResult, frame_write, ingest_stream
from .lake import open_table_uri

READ_TASK_BYTES = 128 << 20
_RESULT_SCHEMA = "part long, payload binary"


@dataclass(frozen=True)
class _PartitionWriter:
    """The mapInArrow function of ``write``: validates and writes one DataFrame partition."""

    target: IngestTarget
    source: str

    def __call__(self, batches):
        from pyspark import TaskContext

        from .ingest.convert import rename_columns
        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else 0
        t = self.target

        def stream():
            row = 0
            for b in batches:
                yield self.source, row, rename_columns(b, t.id_column, t.vector_column, self.source)
                row += b.num_rows

        from .engines.base import blas_threads
        with blas_threads(_cpus(ctx)):
            res = ingest_stream(stream(), t, part, t.model())
        yield pa.RecordBatch.from_pydict({"part": [part], "payload": [pickle.dumps(res, protocol=5)]})


def _cpus(ctx):
    try:
        return int(ctx.cpus()) if ctx is not None else None
    except Exception:
        return None


def write(df, table, id_column: str = ID_COLUMN, vector_column: str = VECTOR_COLUMN, on_bad_rows: str = "raise",
          idempotency_key: str | None = None, storage_options: dict | None = None,
          check_existing_ids: bool = True):
    """Append the rows of Spark DataFrame ``df`` to ``table`` in one commit; return an AddResult."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from .engines import get_engine
    source = "spark DataFrame"

    def run(target):
        try:
            collected = df.mapInArrow(_PartitionWriter(target, source), _RESULT_SCHEMA).collect()
        except Exception as e:
            raise _spark_error(e, "write") from e
        by_part: dict[int, StreamResult] = {}
        for row in collected:  # exactly one result per partition is kept
            by_part.setdefault(int(row["part"]), pickle.loads(row["payload"]))
        results, base = [], 0
        for i, p in enumerate(sorted(by_part)):
            r = by_part[p]
            r.task_id, r.row_base = i, base
            base += r.rows_read
            results.append(r)
        return results

    return frame_write(open_table_uri(table, storage_options), to_arrow_schema(df.schema), source, run, id_column, vector_column, on_bad_rows,
                       idempotency_key, storage_options, check_existing_ids, get_engine("spark"))


def _spark_error(e: Exception, what: str) -> EngineError:
    text = str(e)
    reason = next((ln.strip() for ln in reversed(text.splitlines())
                   if ("Error" in ln or "Exception" in ln) and not ln.strip().startswith("at ")), type(e).__name__)
    return EngineError(f"spark {what} failed: {reason[:300]}")


# --------------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------------

def _spark_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """Fixed-size lists become lists (Spark's array type)."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_fixed_size_list(t):
            t = pa.list_(t.value_type)
        fields.append(pa.field(f.name, t, nullable=True))
    return pa.schema(fields)


def _to_spark_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    cols = []
    for f in schema:
        arr = batch.column(batch.schema.get_field_index(f.name))
        cols.append(arr.cast(f.type) if arr.type != f.type else arr)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


@dataclass(frozen=True)
class _FragmentReader:
    """The mapInArrow function of ``read``: reads the fragment groups of its input rows with Lance."""

    data_uri: str
    storage_options: dict | None
    version: int
    columns: tuple
    filter: str | None
    schema: pa.Schema

    def __call__(self, batches):
        import lance
        ds = lance.dataset(self.data_uri, version=self.version, storage_options=self.storage_options)
        for b in batches:
            for frag_ids in b.column("frags").to_pylist():
                frags = [ds.get_fragment(f) for f in frag_ids]
                scanner = ds.scanner(columns=list(self.columns), filter=self.filter, fragments=frags,
                                     scan_in_order=True)
                for rb in scanner.to_batches():
                    if rb.num_rows:
                        yield _to_spark_batch(rb, self.schema)


def fragment_groups(ds, task_bytes: int) -> list[list[int]]:
    """Group the dataset's fragments into lists of about ``task_bytes`` of data (in fragment order)."""
    groups: list[list[int]] = [[]]
    acc = 0
    for fr in ds.get_fragments():
        size = sum(int(df.file_size_bytes or 0) for df in fr.metadata.files)
        if groups[-1] and acc + size > task_bytes:
            groups.append([])
            acc = 0
        groups[-1].append(fr.fragment_id)
        acc += size
    return [g for g in groups if g]


def read_plan(table, columns=None, filter: str | None = None, storage_options: dict | None = None,
              version: int | None = None):
    """Validate the arguments; return (table, dataset, columns, output Arrow schema)."""
    table = open_table_uri(table, storage_options)
    if version is not None:
        table = table.checkout(version)
    ds = table._dataset()
    visible = [f.name for f in ds.schema if f.name != PARTITION_COLUMN]
    cols = list(columns) if columns else visible
    if isinstance(columns, str):
        raise InvalidArgumentError("columns must be a list of column names, not a string")
    unknown = [c for c in cols if c not in visible]
    if unknown:
        raise InvalidArgumentError(f"unknown column(s) {unknown} of table {table.name!r}; columns are {visible}")
    if filter is not None:
        from .search.filters import check_filter
        filter = check_filter(filter, ds.schema)  # exactly one expression, checked against the columns
    schema = pa.schema([ds.schema.field(c) for c in cols])
    return table, ds, cols, schema, filter


def read(table, columns=None, filter: str | None = None, spark=None, storage_options: dict | None = None,
         version: int | None = None, task_bytes: int = READ_TASK_BYTES):
    """Return the table (its ``columns``, rows matching ``filter``) as a Spark DataFrame."""
    from pyspark.sql import SparkSession
    from pyspark.sql.pandas.types import from_arrow_schema

    table, ds, cols, schema, filter = read_plan(table, columns, filter, storage_options, version)
    out_schema = _spark_arrow_schema(schema)
    spark_schema = from_arrow_schema(out_schema)
    spark = spark or SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    groups = fragment_groups(ds, task_bytes)
    if not groups:
        return spark.createDataFrame([], spark_schema)
    sc = spark.sparkContext
    rdd = sc.parallelize([(i, g) for i, g in enumerate(groups)], len(groups))  # one group per task
    plan = spark.createDataFrame(rdd, "gid long, frags array<long>")
    reader = _FragmentReader(table.data_uri, table.lake.lance_options, ds.version, tuple(cols), filter, out_schema)
    return plan.mapInArrow(reader, spark_schema)


# --------------------------------------------------------------------------------------------------
# similarity join (lakevec.join)
# --------------------------------------------------------------------------------------------------

def knn_join(df, table, k=10, spark=None, engine="spark", **kw):
    """The k nearest rows of ``table`` for each row of the Spark DataFrame ``df`` (id and vector columns),
    as a Spark DataFrame (``left_id, right_id, distance, rank``, ...) with the join's report as ``.report``.
    Keyword arguments are those of ``lakevec.knn_join`` (``output=`` makes the DataFrame read the committed
    Parquet parts). See ``lakevec.join.frames``."""
    from .join.frames import spark_knn_join
    return spark_knn_join(df, table, k=k, spark=spark, engine=engine, **kw)
