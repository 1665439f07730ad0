"""Table.add with every accepted input kind, column names and vector dtypes (local and S3)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from core_helpers import (arrow_rows, hermetic_aws, make_rows, source_root, table_vectors,  # noqa: F401
                          write_parquet)

import lakevec

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 8


def _check_contents(t, expected: dict):
    """Assert the table holds exactly ``expected`` (a make_rows-style dict), compared by id."""
    ids, vec, tbl = table_vectors(t)
    order = np.argsort(expected["id"])
    assert ids.tolist() == np.asarray(expected["id"])[order].tolist()
    np.testing.assert_allclose(vec, np.asarray(expected["vector"], dtype=np.float32)[order], rtol=1e-6)
    for col, values in expected.items():
        if col not in ("id", "vector"):
            assert tbl.column(col).to_pylist() == np.asarray(values)[order].tolist(), col


def test_add_pyarrow_table(lake):
    t = lake.create_table("t", dim=DIM)
    v0 = t.version
    r = t.add(arrow_rows(50))
    assert (r.rows_added, r.rows_rejected) == (50, 0)
    assert r.version == t.version == v0 + 1
    assert t.count_rows() == 50
    _check_contents(t, make_rows(50))
    # the schema the user sees: id, vector, user columns; never the internal _partition
    assert t.schema.names == ["id", "vector", "tag"]
    assert t.schema.field("vector").type == pa.list_(pa.float32(), DIM)


def test_add_record_batch_reader_in_several_batches(lake):
    t = lake.create_table("t", dim=DIM)
    tbl = arrow_rows(60)
    reader = pa.RecordBatchReader.from_batches(tbl.schema, tbl.to_batches(max_chunksize=13))
    r = t.add(reader)
    assert r.rows_added == 60 and t.count_rows() == 60
    _check_contents(t, make_rows(60))


def test_add_pandas_dataframe(lake):
    d = make_rows(30)
    df = pd.DataFrame({"id": d["id"], "vector": list(d["vector"]), "tag": d["tag"]})
    t = lake.create_table("t", dim=DIM)
    r = t.add(df)
    assert r.rows_added == 30
    _check_contents(t, d)


def test_add_pandas_dataframe_with_list_vectors_and_string_column(lake):
    d = make_rows(10, tag=False)
    df = pd.DataFrame({"id": d["id"], "vector": [v.tolist() for v in d["vector"]],
                       "title": [f"doc {i}" for i in d["id"]]})
    t = lake.create_table("t", dim=DIM)
    t.add(df)
    _, _, tbl = table_vectors(t)
    assert tbl.column("title").to_pylist() == [f"doc {i}" for i in range(10)]
    np.testing.assert_allclose(np.stack(tbl.column("vector").to_numpy(zero_copy_only=False)), d["vector"])


def test_add_dict_of_numpy_and_successive_adds(lake):
    t = lake.create_table("t", dim=DIM)
    a, b = make_rows(40), make_rows(25, start=40, seed=1)
    r1 = t.add(a)
    r2 = t.add(b)
    assert r2.version == r1.version + 1 == t.version
    assert t.count_rows() == 65
    _check_contents(t, {k: np.concatenate([a[k], b[k]]) for k in a})
    # old versions stay readable
    assert t.checkout(r1.version).count_rows() == 40


def test_add_custom_id_and_vector_column_names(lake):
    d = make_rows(20)
    t = lake.create_table("t", dim=DIM)
    r = t.add({"doc_id": d["id"], "emb": d["vector"], "tag": d["tag"]}, id_column="doc_id", vector_column="emb")
    assert r.rows_added == 20
    assert t.schema.names == ["id", "vector", "tag"]
    _check_contents(t, d)


def test_custom_column_names_missing_is_a_schema_error(lake):
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.SchemaError, match="'emb'"):
        t.add(make_rows(3), vector_column="emb")
    with pytest.raises(lakevec.SchemaError, match="'doc_id'"):
        t.add(make_rows(3), id_column="doc_id")
    assert t.count_rows() == 0


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64, np.uint8])
def test_vector_dtypes_are_converted_to_float32(lake, dtype):
    rng = np.random.default_rng(3)
    raw = (rng.standard_normal((12, DIM)) * 10).astype(dtype) if np.dtype(dtype).kind == "f" else \
        rng.integers(1, 100, (12, DIM)).astype(dtype)
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(12), "vector": raw})
    ids, vec, _ = table_vectors(t)
    assert vec.dtype == np.float32 and t.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    np.testing.assert_allclose(vec, raw.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("value_type", [pa.float16(), pa.float64(), pa.int16()])
def test_arrow_vector_types_are_converted(lake, value_type):
    rng = np.random.default_rng(4)
    raw = rng.integers(-50, 50, (9, DIM)).astype(np.float64)
    vals = pa.array(raw.ravel()).cast(value_type)
    for vec_col in (pa.FixedSizeListArray.from_arrays(vals, DIM),
                    pa.ListArray.from_arrays(pa.array(np.arange(0, 9 * DIM + 1, DIM, dtype=np.int32)), vals)):
        t = lake.create_table("t", dim=DIM)
        t.add(pa.table({"id": pa.array(np.arange(9)), "vector": vec_col}))
        _, vec, _ = table_vectors(t)
        np.testing.assert_array_equal(vec, raw.astype(np.float32))
        lake.drop_table("t")


@pytest.mark.parametrize("id_dtype", [np.int32, np.uint16, np.int8])
def test_narrow_integer_ids_are_widened(lake, id_dtype):
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(10, dtype=id_dtype), "vector": make_rows(10)["vector"]})
    assert t.schema.field("id").type == pa.int64()
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(10))


def test_string_id_table(lake):
    t = lake.create_table("s", dim=DIM, id_type="string")
    d = make_rows(15, tag=False)
    ids = [f"doc-{i:03d}" for i in range(15)]
    r = t.add({"id": ids, "vector": d["vector"]})
    assert r.rows_added == 15
    assert t.schema.field("id").type == pa.string()
    tbl = t.to_arrow().sort_by("id")
    assert tbl.column("id").to_pylist() == ids
    # large_string ids are accepted too
    more = pa.table({"id": pa.array(["x1", "x2"], pa.large_string()),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(2 * DIM, np.float32)), DIM)})
    t.add(more)
    assert t.count_rows() == 17
    with pytest.raises(lakevec.ValidationError, match="duplicate id 'doc-003'"):
        t.add({"id": ["doc-003"], "vector": d["vector"][:1]})
    lake2 = lakevec.connect(lake.uri, storage_options=lake.storage_options)
    assert lake2.open_table("s").meta.id_type == "string"


def test_cosine_table_stores_unit_vectors(lake):
    t = lake.create_table("c", dim=DIM, metric="cosine")
    d = make_rows(10)
    d["vector"] = d["vector"] * 7.5
    t.add(d)
    _, vec, _ = table_vectors(t)
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vec, d["vector"] / np.linalg.norm(d["vector"], axis=1, keepdims=True), rtol=1e-5)


# -- Parquet sources ----------------------------------------------------------------------------

def _parquet_set(storage, tmp_path, n_files=3, rows=20, row_group_size=None):
    root = source_root(storage, tmp_path)
    parts = []
    for i in range(n_files):
        tbl = arrow_rows(rows, start=i * rows, seed=i)
        parts.append(write_parquet(storage, root, f"day=1/part-{i}.parquet", tbl, row_group_size))
    expected = {"id": np.arange(n_files * rows)}
    expected["vector"] = np.concatenate([make_rows(rows, start=i * rows, seed=i)["vector"] for i in range(n_files)])
    expected["tag"] = expected["id"] % 5
    return root, parts, expected


def test_add_parquet_single_path(storage, lake, tmp_path):
    root, parts, _ = _parquet_set(storage, tmp_path, n_files=1, rows=30, row_group_size=7)
    t = lake.create_table("t", dim=DIM)
    r = t.add(parts[0])
    assert r.rows_added == 30 and r.key and r.key.startswith("src-")
    _check_contents(t, make_rows(30))


def test_add_parquet_glob(storage, lake, tmp_path):
    root, parts, expected = _parquet_set(storage, tmp_path)
    write_parquet(storage, root, "day=1/notes.txt.parquet.bak", arrow_rows(5, start=999))  # not matched
    t = lake.create_table("t", dim=DIM)
    r = t.add(f"{root}/day=1/part-*.parquet")
    assert r.rows_added == 60
    _check_contents(t, expected)


def test_add_parquet_folder(storage, lake, tmp_path):
    root, parts, expected = _parquet_set(storage, tmp_path)
    t = lake.create_table("t", dim=DIM)
    r = t.add(root)  # recurses into day=1/
    assert r.rows_added == 60
    _check_contents(t, expected)


def test_add_parquet_list_of_paths(storage, lake, tmp_path):
    root, parts, _ = _parquet_set(storage, tmp_path)
    t = lake.create_table("t", dim=DIM)
    r = t.add([parts[2], parts[0]])
    assert r.rows_added == 40
    got = sorted(t.to_arrow(columns=["id"]).column("id").to_pylist())
    assert got == list(range(0, 20)) + list(range(40, 60))


def test_add_parquet_with_custom_column_names(storage, lake, tmp_path):
    root = source_root(storage, tmp_path)
    tbl = arrow_rows(12).rename_columns(["key", "embedding", "tag"])
    path = write_parquet(storage, root, "x.parquet", tbl)
    t = lake.create_table("t", dim=DIM)
    t.add(path, id_column="key", vector_column="embedding")
    _check_contents(t, make_rows(12))


def test_add_local_parquet_into_any_lake(storage, lake, tmp_path):
    # local files are ingested into a lake on S3 as well
    path = tmp_path / "local.parquet"
    import pyarrow.parquet as pq
    pq.write_table(arrow_rows(9), path)
    t = lake.create_table("t", dim=DIM)
    assert t.add(str(path)).rows_added == 9
    assert t.add(tmp_path / "local.parquet").skipped  # a PathLike names the same source


@pytest.mark.parametrize("kind", ["path", "glob", "folder"])
def test_missing_parquet_sources(storage, lake, tmp_path, kind):
    root = source_root(storage, tmp_path)
    write_parquet(storage, root, "other/a.parquet", arrow_rows(3))  # the root exists, the source does not
    src = {"path": f"{root}/nope.parquet", "glob": f"{root}/none-*.parquet", "folder": f"{root}/empty-dir"}[kind]
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.StorageError) as ei:
        t.add(src)
    assert "nope.parquet" in str(ei.value) or "none-*" in str(ei.value) or "empty-dir" in str(ei.value)
    assert t.count_rows() == 0


def test_not_a_parquet_file(storage, lake, tmp_path):
    root = source_root(storage, tmp_path)
    path = f"{root}/bad.parquet"
    if path.startswith("s3://"):
        from lakevec.store.location import parse_location
        from lakevec.store.objects import ObjectStore
        ObjectStore(parse_location(path, storage.storage_options)).write_bytes(path, b"this is not parquet")
    else:
        with open(path, "wb") as f:
            f.write(b"this is not parquet")
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.LakevecError) as ei:
        t.add(path)
    assert "bad.parquet" in str(ei.value)
    assert t.count_rows() == 0


def test_unsupported_input_types(lake):
    t = lake.create_table("t", dim=DIM)
    for bad in (42, object(), np.zeros((3, DIM), np.float32), None):
        with pytest.raises(lakevec.InvalidArgumentError):
            t.add(bad)
    assert t.count_rows() == 0


def test_add_to_a_checked_out_version_is_refused(lake):
    t = lake.create_table("t", dim=DIM)
    r = t.add(make_rows(5))
    old = t.checkout(r.version)
    with pytest.raises(lakevec.InvalidArgumentError, match="read-only"):
        old.add(make_rows(5, start=5))
    assert t.count_rows() == 5


def test_glob_star_stays_in_one_folder_and_double_star_recurses(storage, lake, tmp_path):
    root, parts, expected = _parquet_set(storage, tmp_path)
    write_parquet(storage, root, "top.parquet", arrow_rows(4, start=100, seed=9))
    t = lake.create_table("t", dim=DIM)
    assert t.add(f"{root}/*.parquet").rows_added == 4  # only top.parquet, as a local glob would
    assert t.add(f"{root}/**/part-?.parquet").rows_added == 60
    assert t.count_rows() == 64


def test_cosine_normalisation_of_extreme_magnitudes(lake):
    t = lake.create_table("c", dim=DIM, metric="cosine")
    vec = np.ones((3, DIM), np.float32)
    vec[0] *= 1e30  # its squares overflow float32
    vec[1] *= 1e-30  # its squares underflow to zero in float32
    vec[2, 0] = 3.0
    t.add({"id": np.arange(3), "vector": vec})
    _, stored, _ = table_vectors(t)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(stored[0], np.full(DIM, 1 / np.sqrt(DIM)), rtol=1e-5)


def test_folder_skips_hidden_files_like_spark_output(storage, lake, tmp_path):
    root = source_root(storage, tmp_path)
    write_parquet(storage, root, "part-00000.snappy.parquet", arrow_rows(6, DIM, 0))
    write_parquet(storage, root, "day=2/part-00001.parquet", arrow_rows(4, DIM, 6, seed=1))
    write_parquet(storage, root, "_temporary/0/part-00002.parquet", arrow_rows(3, DIM, 100, seed=2))
    write_parquet(storage, root, ".part-00000.parquet", arrow_rows(3, DIM, 200, seed=3))
    write_parquet(storage, root, "_SUCCESS.parquet", arrow_rows(3, DIM, 300, seed=4))
    t = lake.create_table("t", dim=DIM)
    assert t.add(root).rows_added == 10
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(10))


def test_transient_read_error_resumes_at_the_failed_row_group(storage, lake, tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    root = source_root(storage, tmp_path)
    path = write_parquet(storage, root, "big.parquet", arrow_rows(40, DIM), row_group_size=10)
    real = pq.ParquetFile.read_row_group
    calls = []

    def flaky(self, i, *a, **kw):
        calls.append(i)
        if calls.count(2) == 1 and i == 2:
            raise OSError("injected: connection reset by peer")
        return real(self, i, *a, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", flaky)
    t = lake.create_table("t", dim=DIM)
    r = t.add(path)
    assert r.rows_added == 40 and calls == [0, 1, 2, 2, 3]
    _check_contents(t, make_rows(40))
