"""Ray Dataset integration: write a Ray Dataset into a lakevec table, read a table as a Ray Dataset.

    import lakevec.ray as lvr
    r = lvr.write(ds, table)                        # ds: id, vector, other columns
    ds = lvr.read(table, columns=["id", "vector"], filter="tag = 3")

``table`` is a ``lakevec`` Table or a table URI ``"<lake uri>/<table name>"`` (pass
``storage_options`` for S3, or rely on the AWS_* environment). Ray must be initialised
(``ray.init()``) or Ray Data initialises a local Ray itself.

write: ``map_batches`` over whole blocks, in dataset order: each call validates its block with the
local engine's checks (vectors may be fixed-size lists, lists or Ray tensor columns), writes Lance
fragments (one partition each when the table is indexed) and returns one small row with its pickled
result (fragment metadata, ids, row problems). The driver collects exactly one row per block (Ray
retries a failed block; only the successful attempt's row reaches the driver), checks duplicates
across blocks and against the table, applies ``on_bad_rows`` and commits once (see
``lakevec.ingest.distributed``). Rows are numbered in dataset order in messages. Re-running with the
same ``idempotency_key`` commits nothing. Files of failed attempts are removed by ``vacuum``.

read: a Ray ``Datasource`` with one read task per group of fragments (about ``task_bytes`` each),
reading with Lance at the version current when ``read`` was called (or ``version``); ``filter`` is
applied by Lance inside each read task, so counts and contents are exactly the filtered rows (unlike
``ray.data.read_lance(filter=...).count()`` in this Ray version). Vectors stay fixed-size lists.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .config import ID_COLUMN, VECTOR_COLUMN
from .errors import EngineError, InvalidArgumentError
from .ingest.distributed import IngestTarget, frame_write, ingest_stream
from .lake import open_table_uri

READ_TASK_BYTES = 128 << 20


def _plain_vectors(batch: pa.RecordBatch | pa.Table, column: str):
    """Return ``batch`` with a Ray tensor-extension vector column turned into an Arrow list column."""
    if column not in batch.schema.names:
        return batch
    i = batch.schema.get_field_index(column)
    col = batch.column(i)
    if not isinstance(col.type, pa.ExtensionType):
        return batch
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    try:
        mat = col.to_numpy(zero_copy_only=False)
    except Exception:
        mat = None
    if isinstance(mat, np.ndarray) and mat.ndim == 2:
        flat = pa.array(np.ascontiguousarray(mat).ravel())
        new = pa.FixedSizeListArray.from_arrays(flat, mat.shape[1])
    else:
        rows = list(mat) if mat is not None else col.to_pylist()
        new = pa.array([None if r is None else np.asarray(r).ravel().tolist() for r in rows])
    return batch.set_column(i, pa.field(column, new.type), new)


def _plain_schema(schema: pa.Schema, column: str) -> pa.Schema:
    fields = []
    for f in schema:
        if f.name == column and isinstance(f.type, pa.ExtensionType):
            shape = getattr(f.type, "shape", None)
            vt = getattr(f.type, "scalar_type", None) or pa.float32()
            f = pa.field(f.name, pa.list_(vt, shape[0]) if shape and len(shape) == 1 else pa.list_(vt))
        fields.append(f)
    return pa.schema(fields)


@dataclass(frozen=True)
class _BlockWriter:
    """The map_batches function of ``write``: validates and writes one block."""

    target: IngestTarget
    source: str

    def __call__(self, block: pa.Table) -> pa.Table:
        from .ingest.convert import rename_columns
        t = self.target

        def stream():
            row = 0
            for b in block.to_batches():
                b = _plain_vectors(b, t.vector_column)
                yield self.source, row, rename_columns(b, t.id_column, t.vector_column, self.source)
                row += b.num_rows

        res = ingest_stream(stream(), t, 0, t.model())
        res.rows_read = block.num_rows
        return pa.table({"payload": pa.array([pickle.dumps(res, protocol=5)], type=pa.binary())})


def _dataset_schema(ds) -> pa.Schema:
    s = ds.schema()
    if s is None:
        raise InvalidArgumentError("the Ray Dataset has no schema (is it empty?)")
    base = getattr(s, "base_schema", None)
    if isinstance(base, pa.Schema):
        return base
    return pa.schema([pa.field(n, t if isinstance(t, pa.DataType) else pa.from_numpy_dtype(t))
                      for n, t in zip(s.names, s.types)])


def write(ds, table, id_column: str = ID_COLUMN, vector_column: str = VECTOR_COLUMN, on_bad_rows: str = "raise",
          idempotency_key: str | None = None, storage_options: dict | None = None,
          check_existing_ids: bool = True):
    """Append the rows of Ray Dataset ``ds`` to ``table`` in one commit; return an AddResult."""
    from ray.data import DataContext

    from .engines import get_engine
    source = "ray Dataset"

    def run(target):
        ctx = DataContext.get_current()
        old_order = ctx.execution_options.preserve_order
        ctx.execution_options.preserve_order = True  # results in dataset order: row numbers and first-wins
        try:
            out = ds.map_batches(_BlockWriter(target, source), batch_format="pyarrow", batch_size=None,
                                 zero_copy_batch=True)
            payloads = [r["payload"] for r in out.take_all()]
        except Exception as e:
            raise EngineError(f"ray write failed: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}") from e
        finally:
            ctx.execution_options.preserve_order = old_order
        results, base = [], 0
        for i, raw in enumerate(payloads):
            r = pickle.loads(raw)
            r.task_id, r.row_base = i, base
            base += r.rows_read
            results.append(r)
        return results

    return frame_write(open_table_uri(table, storage_options), _plain_schema(_dataset_schema(ds), vector_column), source, run, id_column,
                       vector_column, on_bad_rows, idempotency_key, storage_options, check_existing_ids,
                       get_engine("ray"))


# --------------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------------

def _read_group(data_uri, storage_options, version, columns, filter, frag_ids):
    import lance
    ds = lance.dataset(data_uri, version=version, storage_options=storage_options)
    frags = [ds.get_fragment(f) for f in frag_ids]
    tbl = ds.scanner(columns=list(columns), filter=filter, fragments=frags, scan_in_order=True).to_table()
    yield tbl


def _datasource(data_uri, storage_options, version, columns, filter, groups, sizes, schema):
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class LakevecDatasource(Datasource):
        """One read task per fragment group of a lakevec table version."""

        def get_name(self) -> str:
            return "Lakevec"

        def estimate_inmemory_data_size(self):
            return int(sum(sizes))

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            tasks = []
            for g, size in zip(groups, sizes):
                meta = BlockMetadata(num_rows=None, size_bytes=int(size), exec_stats=None, input_files=None)

                def read_fn(g=g):
                    return _read_group(data_uri, storage_options, version, columns, filter, g)

                tasks.append(ReadTask(read_fn, meta, schema=schema))
            return tasks

    return LakevecDatasource()


def read(table, columns=None, filter: str | None = None, storage_options: dict | None = None,
         version: int | None = None, task_bytes: int = READ_TASK_BYTES):
    """Return the table (its ``columns``, rows matching ``filter``) as a Ray Dataset (lazy)."""
    import ray.data

    from .spark import fragment_groups, read_plan
    table, lds, cols, schema, filter = read_plan(table, columns, filter, storage_options, version)
    groups = fragment_groups(lds, task_bytes)
    if not groups:
        return ray.data.from_arrow(schema.empty_table())
    size_of = {fr.fragment_id: sum(int(df.file_size_bytes or 0) for df in fr.metadata.files)
               for fr in lds.get_fragments()}
    sizes = [sum(size_of[f] for f in g) for g in groups]
    src = _datasource(table.data_uri, table.lake.lance_options, lds.version, tuple(cols), filter, groups, sizes,
                      schema)
    return ray.data.read_datasource(src, override_num_blocks=len(groups))


# --------------------------------------------------------------------------------------------------
# similarity join (lakevec.join)
# --------------------------------------------------------------------------------------------------

def knn_join(ds, table, k=10, engine="ray", **kw):
    """The k nearest rows of ``table`` for each row of the Ray Dataset ``ds`` (id and vector columns), as a
    Ray Dataset (``left_id, right_id, distance, rank``, ...) with the join's report as ``.report``. Keyword
    arguments are those of ``lakevec.knn_join``. See ``lakevec.join.frames``."""
    from .join.frames import ray_knn_join
    return ray_knn_join(ds, table, k=k, engine=engine, **kw)
