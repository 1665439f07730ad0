"""Spark DataFrames and Ray Datasets in and out of a join.

In: a DataFrame / Dataset on the left never passes through the driver. Phase 1 (assign) runs where its rows
are: Spark ``mapInArrow`` (one task per DataFrame partition, emitting one small row with its pickled
``AssignResult``), or one Ray task per block of ``Dataset.to_arrow_refs()``. Partition / block ``i`` is left
shard ``i`` (row references ``i << 32 | row``). Errors inside a partition come back through the engines'
failure records (``engines.base.call_task``), so a null id is the same ValidationError as on the local
engine. The other phases run on the engine given to the join.

Out: ``lakevec.spark.knn_join(df, table, ...)`` returns a Spark DataFrame and ``lakevec.ray.knn_join(ds,
table, ...)`` a Ray Dataset, each with the join's report as ``.report``. With ``output=`` the frame reads the
committed Parquet parts (lazily, in Python tasks: no Hadoop S3 connector needed); without it the pairs,
already collected by the join, are handed to Spark/Ray.
"""
from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import EngineError, SchemaError


def frame_kind(x) -> str | None:
    """Return "spark" / "ray" if ``x`` is a Spark DataFrame / Ray Dataset (without importing either)."""
    if "pyspark" in sys.modules:
        from pyspark.sql import DataFrame
        if isinstance(x, DataFrame):
            return "spark"
    if "ray" in sys.modules:
        try:
            from ray.data import Dataset
        except Exception:  # pragma: no cover
            return None
        if isinstance(x, Dataset):
            return "ray"
    return None


def _frame_schema(frame, kind: str) -> pa.Schema:
    if kind == "spark":
        from pyspark.sql.pandas.types import to_arrow_schema
        return to_arrow_schema(frame.schema)
    s = frame.schema()
    if s is None:
        raise SchemaError("the left Ray Dataset has no schema (is it empty?)")
    base = getattr(s, "base_schema", None)
    if isinstance(base, pa.Schema):
        return base
    return pa.schema([pa.field(n, t if isinstance(t, pa.DataType) else pa.from_numpy_dtype(t))
                      for n, t in zip(s.names, s.types)])


def resolve_frame(frame, kind: str, dim: int, id_column: str, vector_column: str, columns: tuple, seed: int):
    """Describe a Spark DataFrame / Ray Dataset left side (counts its rows, samples some for the plan)."""
    from .sources import LeftInput, PLAN_SAMPLE_ROWS, vector_matrix
    schema = _frame_schema(frame, kind)
    src = f"left {'Spark DataFrame' if kind == 'spark' else 'Ray Dataset'}"
    names = schema.names
    for c, role in ((id_column, "id"), (vector_column, "vector")):
        if c not in names:
            raise SchemaError(f"{src}: the left input has no {role} column {c!r} (columns: {names}); name it with "
                              f"{'id_column' if role == 'id' else 'vector_column'}=", source=src)
    for c in columns:
        if c not in names:
            from ..errors import InvalidArgumentError
            raise InvalidArgumentError(f"column {c!r} asked in columns= is not in the {src} (columns: {names})")
    rows = int(frame.count())
    sample = None
    if rows:
        if kind == "spark":
            t = frame.select(vector_column).limit(PLAN_SAMPLE_ROWS).toArrow()
        else:
            t = frame.select_columns([vector_column]).limit(PLAN_SAMPLE_ROWS).to_arrow_refs()
            import ray
            t = pa.concat_tables(ray.get(t))
        col = t.column(0)
        if len(col):
            sample = vector_matrix(col, dim, "l2", src)
    return LeftInput(kind, src, frame=frame, rows=rows, id_column=id_column, vector_column=vector_column,
                     columns=columns, sample_vectors=sample)


def frame_batches(batches, part: int, id_column: str, vector_column: str, columns: tuple, dim: int, metric: str,
                  source: str):
    """LeftBatches of one Spark partition / Ray block (refs ``part << 32 | row``)."""
    from .sources import LeftBatch, normalize_ids, vector_matrix
    row = 0
    for b in batches:
        n = b.num_rows
        if not n:
            continue
        names = b.schema.names
        ids = normalize_ids(b.column(names.index(id_column)), f"{source} partition {part}", row)
        vec = vector_matrix(b.column(names.index(vector_column)), dim, metric, f"{source} partition {part}", row)
        refs = (np.int64(part) << np.int64(32)) + np.arange(row, row + n, dtype=np.int64)
        extra = pa.Table.from_batches([b]).select(list(columns)) if columns else None
        yield LeftBatch(ids, vec, refs, extra)
        row += n


@dataclass(frozen=True)
class _SparkAssign:
    """The mapInArrow function: phase 1 of one DataFrame partition; emits (part, pickled outcome)."""

    right: object
    scratch: object
    params: object
    plan_uri: str
    has_unassigned: bool
    id_column: str
    vector_column: str
    columns: tuple
    source: str
    attempts: int = 1

    def __call__(self, batches):
        from pyspark import TaskContext

        from ..engines.base import blas_threads, call_task
        from .tasks import assign_rows
        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else 0
        last = ctx is None or ctx.attemptNumber() + 1 >= self.attempts
        p = self.params

        def work(_):
            lb = frame_batches(batches, part, self.id_column, self.vector_column, self.columns, p.dim, p.metric,
                               self.source)
            return assign_rows(lb, part, self.right, self.scratch, p, self.plan_uri, self.has_unassigned, part)

        try:
            cpus = int(ctx.cpus()) if ctx is not None else None
        except Exception:
            cpus = None
        with blas_threads(cpus):
            out = call_task(work, {"task_id": f"partition {part}"}, part, last_attempt=last)
        yield pa.RecordBatch.from_pydict({"part": [part], "payload": [pickle.dumps(out, protocol=5)]})


@dataclass(frozen=True)
class RayBlockTask:
    """Phase 1 of one block of a Ray Dataset (the block stays in Ray's object store until the task runs)."""

    task_id: int
    block: object  # ObjectRef of a pyarrow Table
    right: object
    scratch: object
    params: object
    plan_uri: str
    has_unassigned: bool
    id_column: str
    vector_column: str
    columns: tuple = ()
    source: str = "left Ray Dataset"


def run_ray_block_task(task: RayBlockTask):
    import ray

    from .tasks import assign_rows
    tbl = ray.get(task.block)
    if not isinstance(tbl, pa.Table):
        tbl = pa.Table.from_pandas(tbl) if hasattr(tbl, "columns") else pa.table(tbl)
    p = task.params
    lb = frame_batches(tbl.to_batches(), task.task_id, task.id_column, task.vector_column, task.columns, p.dim,
                       p.metric, task.source)
    return assign_rows(lb, task.task_id, task.right, task.scratch, p, task.plan_uri, task.has_unassigned,
                       task.task_id)


def run_frame_assign(left_in, rspec, spec, params, plan_uri: str, has_u: bool, dim: int, metric: str) -> list:
    """Phase 1 of a DataFrame / Dataset left side; returns the AssignResults in partition order."""
    cols = (left_in.id_column, left_in.vector_column, *[c for c in left_in.columns
                                                        if c not in (left_in.id_column, left_in.vector_column)])
    if left_in.kind == "spark":
        from ..engines.base import unwrap_results
        from ..engines.spark import max_task_attempts
        df = left_in.frame.select(*cols)
        fn = _SparkAssign(rspec, spec, params, plan_uri, has_u, left_in.id_column, left_in.vector_column,
                          left_in.columns, left_in.source, max_task_attempts(df.sparkSession.sparkContext))
        try:
            rows = df.mapInArrow(fn, "part long, payload binary").collect()
        except Exception as e:
            text = str(e)
            reason = next((ln.strip() for ln in reversed(text.splitlines())
                           if ("Error" in ln or "Exception" in ln) and not ln.strip().startswith("at ")),
                          type(e).__name__)
            raise EngineError(f"join: assign on the Spark DataFrame failed: {reason[:300]}") from e
        by_part: dict = {}
        for r in rows:  # one row per partition: a retried or speculative attempt never adds a second
            by_part.setdefault(int(r["part"]), pickle.loads(r["payload"]))
        return unwrap_results([by_part[p] for p in sorted(by_part)], "join: assign", "spark")
    import ray  # noqa: F401

    from ..engines import get_engine
    refs = left_in.frame.select_columns(list(cols)).to_arrow_refs()
    tasks = [RayBlockTask(i, ref, rspec, spec, params, plan_uri, has_u, left_in.id_column, left_in.vector_column,
                          left_in.columns, left_in.source) for i, ref in enumerate(refs)]
    return get_engine("ray").map(run_ray_block_task, tasks, name="join: assign")


# --------------------------------------------------------------------------------------------------
# results as frames
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _PartReader:
    """mapInArrow function reading committed Parquet parts of a join output."""

    root: str
    storage_options: dict | None = field(default=None, repr=False)

    def __call__(self, batches):
        import pyarrow.parquet as pq

        from ..store.location import parse_location
        from ..store.objects import ObjectStore
        store = ObjectStore(parse_location(self.root, self.storage_options))
        for b in batches:
            for name in b.column("part").to_pylist():
                f = pq.ParquetFile(store.loc.fs_path(f"{self.root.rstrip('/')}/{name}"), filesystem=store.fs)
                yield from f.iter_batches()


def spark_knn_join(df, table, k=10, spark=None, engine="spark", **kw):
    """``knn_join`` with a Spark DataFrame result (see ``lakevec.spark.knn_join``)."""
    from pyspark.sql import SparkSession
    from pyspark.sql.pandas.types import from_arrow_schema

    from . import knn_join
    res = knn_join(df, table, k=k, engine=engine, **kw)
    spark = spark or (df.sparkSession if frame_kind(df) == "spark" else None) or SparkSession.getActiveSession() \
        or SparkSession.builder.getOrCreate()
    if res.output is None:
        out = spark.createDataFrame(res.table)
    else:
        from .output import MANIFEST
        from ..store.location import parse_location
        from ..store.objects import ObjectStore
        loc = parse_location(res.output, res.storage_options)
        m = ObjectStore(loc).read_json(loc.join(MANIFEST))
        parts = m.get("parts", [])
        schema = res.table.schema if not parts else _part_schema(loc, res.storage_options, parts[0])
        if not parts:
            out = spark.createDataFrame(res.table)
        else:
            plan = spark.createDataFrame([(p,) for p in parts], "part string").repartition(len(parts))
            out = plan.mapInArrow(_PartReader(loc.uri, res.storage_options), from_arrow_schema(schema))
    out.report = res.report
    return out


def _part_schema(loc, storage_options, name: str) -> pa.Schema:
    import pyarrow.parquet as pq

    from ..store.objects import ObjectStore
    store = ObjectStore(loc)
    return pq.ParquetFile(loc.fs_path(loc.join(name)), filesystem=store.fs).schema_arrow


def ray_knn_join(ds, table, k=10, engine="ray", **kw):
    """``knn_join`` with a Ray Dataset result (see ``lakevec.ray.knn_join``)."""
    import ray.data

    from . import knn_join
    res = knn_join(ds, table, k=k, engine=engine, **kw)
    if res.output is None:
        out = ray.data.from_arrow(res.table)
    else:
        from .output import MANIFEST
        from ..store.location import parse_location
        from ..store.objects import ObjectStore
        loc = parse_location(res.output, res.storage_options)
        store = ObjectStore(loc)
        parts = store.read_json(loc.join(MANIFEST)).get("parts", [])
        if not parts:
            out = ray.data.from_arrow(res.table)
        else:
            out = ray.data.read_parquet([loc.fs_path(loc.join(p)) for p in parts], filesystem=store.fs)
    out.report = res.report
    return out
