"""Every bad input to Table.add raises a lakevec error naming the problem and where it is (row, column,
file), and leaves the table exactly as it was; on_bad_rows="skip" and "quarantine" ingest the good rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from core_helpers import (TableState, assert_lakevec_error, hermetic_aws, make_rows,  # noqa: F401
                          source_root, write_parquet)

import lakevec

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 4


@pytest.fixture
def table(lake):
    """A table of dim 4 holding ids 0..9 with a ``tag`` int64 user column."""
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, dim=DIM))
    return t


def _fsl(mat) -> pa.Array:
    mat = np.asarray(mat, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(mat.ravel()), mat.shape[1])


def _rows(n=6, start=100, **over):
    """A pyarrow Table of n good rows (ids start..) that fits ``table``; ``over`` replaces columns."""
    d = make_rows(n, dim=DIM, start=start, seed=5)
    cols = {"id": pa.array(d["id"]), "vector": _fsl(d["vector"]), "tag": pa.array(d["tag"])}
    cols.update(over)
    return pa.table(cols)


def _with_vector_row(row, value, n=6):
    """Rows whose vector at ``row`` is ``value`` (a list, possibly None / containing None)."""
    vecs = [list(map(float, v)) for v in make_rows(n, dim=DIM, start=100, seed=5)["vector"]]
    vecs[row] = value
    return _rows(n, vector=pa.array(vecs, pa.list_(pa.float32())))


# Each case: rows, the error class, and the words the message must contain.
ROW_CASES = {
    "wrong_dim_one_row": (lambda: _with_vector_row(3, [1.0, 2.0, 3.0]), lakevec.ValidationError,
                          ["row 3", "vector", "dimension 3", "expects 4"]),
    "wrong_dim_fixed_size": (lambda: _rows(vector=_fsl(np.ones((6, 5)))), lakevec.ValidationError,
                             ["row 0", "vector", "dimension 5", "expects 4", "6 bad row"]),
    "nan": (lambda: _with_vector_row(2, [1.0, float("nan"), 0.0, 0.0]), lakevec.ValidationError,
            ["row 2", "vector", "nan"]),
    "inf": (lambda: _rows(vector=_fsl(np.where(np.arange(24).reshape(6, 4) == 21, np.inf, 1.0))),
            lakevec.ValidationError, ["row 5", "vector", "inf"]),
    "null_vector": (lambda: _with_vector_row(4, None), lakevec.ValidationError, ["row 4", "vector", "null vector"]),
    "null_element": (lambda: _with_vector_row(1, [1.0, None, 2.0, 3.0]), lakevec.ValidationError,
                     ["row 1", "vector", "null element"]),
    "null_element_fixed_size": (
        lambda: _rows(vector=pa.FixedSizeListArray.from_arrays(
            pa.array([1.0] * 9 + [None] + [1.0] * 14, pa.float32()), DIM)),
        lakevec.ValidationError, ["row 2", "vector", "null element"]),
    "null_id": (lambda: _rows(id=pa.array([100, 101, None, 103, 104, 105], pa.int64())), lakevec.ValidationError,
                ["row 2", "id", "null id"]),
    "duplicate_within": (lambda: _rows(id=pa.array([100, 101, 102, 101, 104, 105])), lakevec.ValidationError,
                         ["row 3", "id", "duplicate id 101", "row 1"]),
    "duplicate_in_table": (lambda: _rows(id=pa.array([100, 101, 7, 103, 104, 105])), lakevec.ValidationError,
                           ["row 2", "id", "duplicate id 7", "already in the table"]),
}


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_rows_raise_and_leave_no_trace(table, case):
    make, cls, needles = ROW_CASES[case]
    before = TableState(table)
    with pytest.raises(cls) as ei:
        table.add(make())
    err = assert_lakevec_error(ei, *needles, "input", "nothing was written")
    assert err.problems and err.source == "input"
    before.assert_unchanged()


SCHEMA_CASES = {
    "string_vectors": (lambda: _rows(vector=pa.array([["a"] * DIM] * 6)), lakevec.SchemaError,
                       ["vector column", "string"]),
    "scalar_vectors": (lambda: _rows(vector=pa.array(np.arange(6.0))), lakevec.SchemaError,
                       ["vector column", "double"]),
    "float_ids": (lambda: _rows(id=pa.array(np.arange(6.0))), lakevec.SchemaError, ["id column", "double", "integer"]),
    "string_ids_in_int_table": (lambda: _rows(id=pa.array([str(i) for i in range(6)])), lakevec.SchemaError,
                                ["id column", "string", "integer"]),
    "extra_column": (lambda: _rows(extra=pa.array(np.zeros(6))), lakevec.SchemaError,
                     ["schema drift", "extra", "new column"]),
    "missing_column": (lambda: _rows().drop_columns(["tag"]), lakevec.SchemaError,
                       ["schema drift", "missing column", "tag"]),
    "incompatible_column": (lambda: _rows(tag=pa.array(["x"] * 6)), lakevec.SchemaError, ["'tag'", "string", "int64"]),
    "reserved_partition": (lambda: _rows(_partition=pa.array(np.zeros(6, np.int32))), lakevec.SchemaError,
                           ["_partition", "reserved"]),
    "reserved_underscore": (lambda: _rows(_rowid=pa.array(np.zeros(6))), lakevec.SchemaError, ["_rowid", "reserved"]),
    "missing_vector_column": (lambda: _rows().drop_columns(["vector"]), lakevec.SchemaError, ["vector", "not found"]),
    "missing_id_column": (lambda: _rows().drop_columns(["id"]), lakevec.SchemaError, ["id", "not found"]),
}


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_batch_problems_raise_in_every_mode(table, case, mode):
    """Batch-level problems are not row problems: skip/quarantine cannot drop them, they always raise."""
    make, cls, needles = SCHEMA_CASES[case]
    before = TableState(table)
    with pytest.raises(cls) as ei:
        table.add(make(), on_bad_rows=mode)
    assert_lakevec_error(ei, *needles)
    before.assert_unchanged()


def test_lossy_user_column_cast_is_refused(table):
    before = TableState(table)
    with pytest.raises(lakevec.SchemaError) as ei:
        table.add(_rows(tag=pa.array([1.5] * 6)))
    assert_lakevec_error(ei, "'tag'", "int64")
    before.assert_unchanged()
    # a lossless cast is fine
    table.add(_rows(tag=pa.array(np.arange(6, dtype=np.int32))))
    assert table.count_rows() == 16


def test_numpy_string_vectors(lake):
    t = lake.create_table("t", dim=2)
    with pytest.raises(lakevec.SchemaError) as ei:
        t.add({"id": np.arange(2), "vector": np.array([["a", "b"], ["c", "d"]])})
    assert_lakevec_error(ei, "vector", "dtype")
    with pytest.raises(lakevec.SchemaError):
        t.add(pd.DataFrame({"id": [1, 2], "vector": ["ab", "cd"]}))
    assert t.count_rows() == 0


def test_string_table_refuses_integer_ids(lake):
    t = lake.create_table("s", dim=DIM, id_type="string")
    with pytest.raises(lakevec.SchemaError) as ei:
        t.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32)})
    assert_lakevec_error(ei, "id column", "string ids")
    assert t.count_rows() == 0


def test_uint64_ids_beyond_int64(lake):
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.SchemaError, match="int64 range"):
        t.add({"id": np.array([1, 2**63 + 5], dtype=np.uint64), "vector": np.ones((2, DIM), np.float32)})
    t.add({"id": np.array([1, 2], dtype=np.uint64), "vector": np.ones((2, DIM), np.float32)})
    assert t.count_rows() == 2


def test_cosine_zero_vector(lake):
    t = lake.create_table("c", dim=DIM, metric="cosine")
    vec = np.ones((3, DIM), np.float32)
    vec[1] = 0
    with pytest.raises(lakevec.ValidationError) as ei:
        t.add({"id": np.arange(3), "vector": vec})
    assert_lakevec_error(ei, "row 1", "zero vector")
    assert t.count_rows() == 0


@pytest.mark.parametrize("empty", [
    lambda: _rows(0),
    lambda: {"id": np.arange(0), "vector": np.zeros((0, DIM), np.float32), "tag": np.arange(0)},
    lambda: pd.DataFrame({"id": pd.Series([], dtype="int64"), "vector": pd.Series([], dtype=object),
                          "tag": pd.Series([], dtype="int64")}),
    lambda: pa.RecordBatchReader.from_batches(_rows(1).schema, []),
    lambda: {},
    lambda: [],
], ids=["table", "dict", "dataframe", "reader", "empty-dict", "empty-list"])
def test_empty_input_is_an_error(table, empty):
    before = TableState(table)
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        table.add(empty())
    assert_lakevec_error(ei, "empty")
    before.assert_unchanged()


def test_empty_parquet_file_is_an_error(storage, table, tmp_path):
    root = source_root(storage, tmp_path)
    path = write_parquet(storage, root, "empty.parquet", _rows(0))
    before = TableState(table)
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        table.add(path)
    assert_lakevec_error(ei, "no rows", "empty.parquet")
    before.assert_unchanged()


@pytest.mark.parametrize("value", ["ignore", "RAISE", None, 1, "drop"])
def test_bad_on_bad_rows_value(table, value):
    before = TableState(table)
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        table.add(_rows(), on_bad_rows=value)
    assert_lakevec_error(ei, "on_bad_rows", "raise", "skip", "quarantine")
    before.assert_unchanged()


@pytest.mark.parametrize("kw", [{"id_column": 3}, {"vector_column": None}, {"idempotency_key": "has space"},
                                {"idempotency_key": ""}, {"idempotency_key": "a/b"}])
def test_bad_add_arguments(table, kw):
    before = TableState(table)
    with pytest.raises(lakevec.InvalidArgumentError):
        table.add(_rows(), **kw)
    before.assert_unchanged()


def test_error_names_file_row_and_column_for_parquet(storage, table, tmp_path):
    root = source_root(storage, tmp_path)
    good = write_parquet(storage, root, "a-good.parquet", _rows(6, start=200))
    vecs = np.ones((30, DIM), np.float32)
    vecs[17, 2] = np.nan
    bad_tbl = _rows(30, start=300, vector=_fsl(vecs))
    bad = write_parquet(storage, root, "b-bad.parquet", bad_tbl, row_group_size=8)
    before = TableState(table)
    with pytest.raises(lakevec.ValidationError) as ei:
        table.add([good, bad])
    err = assert_lakevec_error(ei, "b-bad.parquet", "row 17", "vector", "nan")
    assert "a-good.parquet" not in str(err)
    assert err.source.endswith("b-bad.parquet")
    before.assert_unchanged()


def test_row_numbers_count_across_batches(table):
    tbl = _rows(30, start=400)
    ids = tbl.column("id").to_numpy().copy()
    ids[23] = ids[2]
    tbl = tbl.set_column(0, "id", pa.array(ids))
    reader = pa.RecordBatchReader.from_batches(tbl.schema, tbl.to_batches(max_chunksize=10))
    with pytest.raises(lakevec.ValidationError) as ei:
        table.add(reader)
    assert_lakevec_error(ei, "row 23", f"duplicate id {ids[2]}", "row 2")
    assert table.count_rows() == 10


def test_message_lists_first_problems_and_counts_the_rest(table):
    vecs = np.full((40, DIM), np.nan, np.float32)
    with pytest.raises(lakevec.ValidationError) as ei:
        table.add(_rows(40, vector=_fsl(vecs)))
    msg = str(ei.value)
    # one reason, said once, with its first rows and the count of the others
    assert "40 bad row(s)" in msg and "row 0, 1, 2 and 37 more (vector): vector contains NaN or Inf" in msg
    assert msg.count("NaN") == 1
    assert len(ei.value.problems) == 40


def test_format_problems_groups_reasons_and_counts_all_bad_rows():
    from lakevec.ingest.validate import format_problems

    listed = [(r, "vector", "vector contains NaN or Inf") for r in range(3, 1003)]
    msg = format_problems(listed, "a.parquet", 5, total=10_000)  # the problem list is capped, the count is not
    assert msg.startswith("10,000 bad row(s) in a.parquet: row 3, 4, 5 and 997 more (vector): ")
    assert msg.count("NaN") == 1 and "9,000 more bad row(s)" in msg
    mixed = [(7, "vector", "null vector"), (9, "id", "null id"), (12, "vector", "null vector")]
    assert format_problems(mixed, "b") == "3 bad row(s) in b: row 7 and 12 (vector): null vector; row 9 (id): null id"
    many = [(i, "id", f"duplicate id {i}") for i in range(8)]
    msg = format_problems(many, "c", limit=2)
    assert msg.endswith("row 1 (id): duplicate id 1; 6 more row(s) with 6 other reason(s)")


def test_ten_thousand_bad_rows_are_counted(table):
    vecs = np.full((10_000, DIM), np.nan, np.float32)
    with pytest.raises(lakevec.ValidationError) as ei:
        table.add(_rows(10_000, vector=_fsl(vecs)))
    assert str(ei.value).startswith("10,000 bad row(s)")


# -- on_bad_rows = skip / quarantine ---------------------------------------------------------------

def _mixed(n=12, start=500):
    """Rows with known problems at rows 1 (NaN), 4 (null id), 6 (dup of row 0), 9 (dup in table), 10 (dim)."""
    d = make_rows(n, dim=DIM, start=start, seed=8)
    vecs = [list(map(float, v)) for v in d["vector"]]
    vecs[1][0] = float("nan")
    vecs[10] = [1.0, 2.0]
    ids = d["id"].tolist()
    ids[4] = None
    ids[6] = ids[0]
    ids[9] = 3  # in the table already
    tbl = pa.table({"id": pa.array(ids, pa.int64()), "vector": pa.array(vecs, pa.list_(pa.float32())),
                    "tag": pa.array(d["tag"])})
    good = [i for j, i in enumerate(d["id"].tolist()) if j not in (1, 4, 6, 9, 10)]
    return tbl, good


def test_skip_drops_and_counts_bad_rows(table):
    tbl, good = _mixed()
    v0 = table.version
    r = table.add(tbl, on_bad_rows="skip")
    assert (r.rows_added, r.rows_rejected) == (len(good), 5)
    assert r.version == v0 + 1 == table.version
    ids = sorted(table.to_arrow(columns=["id"]).column("id").to_pylist())
    assert ids == list(range(10)) + sorted(good)
    assert {p[1] for p in r.problems} == {1, 4, 6, 9, 10}
    assert table.rejects().num_rows == 0  # skip does not quarantine


def test_quarantine_records_rejects_with_reasons(storage, table, tmp_path):
    tbl, good = _mixed()
    root = source_root(storage, tmp_path)
    path = write_parquet(storage, root, "mixed.parquet", tbl)
    r = table.add(path, on_bad_rows="quarantine")
    assert (r.rows_added, r.rows_rejected) == (len(good), 5)
    rej = table.rejects().sort_by("row")
    assert rej.column("row").to_pylist() == [1, 4, 6, 9, 10]
    assert set(rej.column("source").to_pylist()) == {path}
    assert set(rej.column("ingest_key").to_pylist()) == {r.key}
    reasons = rej.column("reason").to_pylist()
    assert "NaN" in reasons[0] and "null id" in reasons[1] and "duplicate id 500" in reasons[2]
    assert "already in the table" in reasons[3] and "dimension 2" in reasons[4]
    assert rej.column("id").to_pylist() == ["501", "", "500", "3", "510"]
    # a second quarantining ingestion appends to the rejects
    tbl2 = _rows(3, start=900, id=pa.array([900, 900, 901]))
    r2 = table.add(tbl2, on_bad_rows="quarantine")
    assert (r2.rows_added, r2.rows_rejected) == (2, 1)
    assert table.rejects().num_rows == 6


def test_all_rows_bad_with_skip_commits_nothing(table):
    v0 = table.version
    r = table.add(_rows(5, vector=_fsl(np.full((5, DIM), np.inf))), on_bad_rows="skip")
    assert (r.rows_added, r.rows_rejected) == (0, 5)
    assert table.version == v0 == r.version and table.count_rows() == 10


def test_first_ingestion_fixes_the_user_schema(lake):
    t = lake.create_table("fresh", dim=DIM)
    t.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32), "lang": ["en", "fr", "de"]})
    assert t.schema.names == ["id", "vector", "lang"]
    with pytest.raises(lakevec.SchemaError, match="schema drift"):
        t.add({"id": np.arange(3, 6), "vector": np.ones((3, DIM), np.float32)})
    # a table whose first rows had no user columns keeps having none
    u = lake.create_table("bare", dim=DIM)
    u.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32)})
    with pytest.raises(lakevec.SchemaError, match="new column"):
        u.add({"id": np.arange(3, 6), "vector": np.ones((3, DIM), np.float32), "lang": ["a", "b", "c"]})
    assert u.count_rows() == 3 and u.schema.names == ["id", "vector"]


@pytest.mark.parametrize("col", ["a.b", " ", ""])
def test_column_names_lance_cannot_store(lake, col):
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.SchemaError) as ei:
        t.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32), col: np.arange(3)})
    assert_lakevec_error(ei, repr(col), "input")
    assert t.count_rows() == 0


def test_untyped_all_null_column_on_first_ingestion(lake):
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.SchemaError) as ei:
        t.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32), "note": [None, None, None]})
    assert_lakevec_error(ei, "'note'", "only nulls")
    assert t.count_rows() == 0
    # with a type it works, and later all-null columns are cast to it
    t.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32), "note": pa.array([None] * 3, pa.string())})
    t.add({"id": np.arange(3, 6), "vector": np.ones((3, DIM), np.float32), "note": [None, None, None]})
    t.add({"id": np.arange(6, 8), "vector": np.ones((2, DIM), np.float32), "note": ["a", None]})
    assert t.schema.field("note").type == pa.string() and t.count_rows() == 8


def test_two_dimensional_user_column_keeps_its_dtype(lake):
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(3), "vector": np.ones((3, DIM), np.float32),
           "counts": np.arange(6, dtype=np.int16).reshape(3, 2)})
    assert t.schema.field("counts").type == pa.list_(pa.int16(), 2)
    assert t.to_arrow().sort_by("id").column("counts").to_pylist() == [[0, 1], [2, 3], [4, 5]]


def test_sliced_inputs_keep_their_rows(lake):
    base = _rows(20, start=0)
    listy = base.set_column(1, "vector", pa.array([list(map(float, v)) for v in
                                                   make_rows(20, dim=DIM, seed=5)["vector"]],
                                                  pa.list_(pa.float32())))
    for i, tbl in enumerate((base, listy)):
        t = lake.create_table(f"t{i}", dim=DIM)
        t.add(tbl.slice(5, 10))
        got = t.to_arrow().sort_by("id")
        assert got.column("id").to_pylist() == list(range(5, 15))
        np.testing.assert_array_equal(np.stack(got.column("vector").to_numpy(zero_copy_only=False)),
                                      make_rows(20, dim=DIM, seed=5)["vector"][5:15])
