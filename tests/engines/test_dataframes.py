"""lakevec.spark / lakevec.ray: write a DataFrame / Dataset into a table (one commit), read it back with a filter."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from core_helpers import TableState, table_vectors

import lakevec

DIM = 8
N = 3000


def _rows(n=N, start=0, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    return {"id": ids, "vector": rng.standard_normal((n, DIM)).astype(np.float32), "tag": ids % 5}


def _spark_df(spark, d, parts=4):
    from pyspark.sql import types as T
    schema = T.StructType([T.StructField("id", T.LongType()), T.StructField("vector", T.ArrayType(T.FloatType())),
                           T.StructField("tag", T.LongType())])
    vec = [[float(x) for x in v] for v in d["vector"]]
    rows = list(zip(d["id"].tolist(), vec, d["tag"].tolist()))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, parts), schema)  # order kept


def _ray_ds(d, parts=4):
    import ray.data
    items = [{"id": int(i), "vector": v, "tag": int(g)} for i, v, g in zip(d["id"], d["vector"], d["tag"])]
    return ray.data.from_items(items, override_num_blocks=parts)  # order kept


def _write(kind, session, d, table, **kw):
    if kind == "spark":
        import lakevec.spark as lvs
        return lvs.write(_spark_df(session, d), table, **kw)
    import lakevec.ray as lvr
    return lvr.write(_ray_ds(d), table, **kw)


@pytest.fixture(params=[pytest.param("spark", marks=pytest.mark.spark), pytest.param("ray", marks=pytest.mark.ray)])
def kind(request):
    session = request.getfixturevalue("spark_session" if request.param == "spark" else "ray_cluster")
    return request.param, session


def test_write_same_rows_as_local_and_key_rerun(kind, local_lake, ref_lake):
    name, session = kind
    d = _rows()
    ref = ref_lake.create_table("t", dim=DIM)
    ref.add(d)
    t = local_lake.create_table("t", dim=DIM)
    r = _write(name, session, d, t, idempotency_key="batch-1")
    assert (r.rows_added, r.rows_rejected, r.version) == (N, 0, t.version)
    ids, vec, tbl = table_vectors(t)
    rids, rvec, rtbl = table_vectors(ref)
    assert ids.tolist() == rids.tolist() and tbl.column("tag").to_pylist() == rtbl.column("tag").to_pylist()
    np.testing.assert_array_equal(vec, rvec)
    assert len(t.snapshot().fragments) >= 4  # one task per partition / block
    v = t.version
    again = _write(name, session, d, t, idempotency_key="batch-1")
    assert again.skipped and t.version == v and t.count_rows() == N


def test_table_add_points_frames_to_their_writer(kind, local_lake):
    """A DataFrame / Dataset is written by its engine's tasks (lakevec.spark.write / lakevec.ray.write), never
    collected to the driver by Table.add: it says so and writes nothing."""
    name, session = kind
    d = _rows()
    t = local_lake.create_table("t", dim=DIM)
    data = _spark_df(session, d) if name == "spark" else _ray_ds(d)
    with pytest.raises(lakevec.InvalidArgumentError, match=f"lakevec.{name}.write"):
        t.add(data, engine=name)
    assert t.count_rows() == 0 and t.version == 1


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_bad_rows_same_problems_as_local(kind, local_lake, ref_lake, mode):
    name, session = kind
    d = _rows()
    d["vector"][1700, 2] = np.inf  # third partition / block
    d["id"][2900] = 100  # duplicate of a row of the first partition
    d["id"][2950] = 2951  # duplicate inside the last partition (row 2951 comes later: it is the duplicate)
    ref = ref_lake.create_table("t", dim=DIM)
    t = local_lake.create_table("t", dim=DIM)
    if mode == "raise":
        with pytest.raises(lakevec.ValidationError) as local:
            ref.add(d)
        before = TableState(t)
        with pytest.raises(lakevec.ValidationError) as dist:
            _write(name, session, d, t)
        # the first bad row, numbered in DataFrame/Dataset order, with the local engine's reason; the error lists
        # the problems of the first bad batch (here: a partition/block; locally: all 3000 rows are one batch)
        got, want = [p[1:] for p in dist.value.problems], [p[1:] for p in local.value.problems]
        assert got[0] == want[0] == (1700, "vector", "vector contains NaN or Inf")
        assert set(got) <= set(want)
        assert "nothing was written to table 't'" in str(dist.value)
        before.assert_unchanged(files=True)
        return
    r_ref = ref.add(d, on_bad_rows="skip")
    r = _write(name, session, d, t, on_bad_rows="skip")
    assert r.rows_rejected == r_ref.rows_rejected == 3
    assert [p[1:] for p in r.problems] == [p[1:] for p in r_ref.problems]
    assert table_vectors(t)[0].tolist() == table_vectors(ref)[0].tolist()


def test_first_write_fixes_user_columns(kind, local_lake):
    name, session = kind
    t = local_lake.create_table("t", dim=DIM)
    _write(name, session, _rows(), t)
    assert t.schema.names == ["id", "vector", "tag"]
    d = _rows(10, start=10_000)
    del d["tag"]  # drift: the table has a tag column now
    if name == "spark":
        import lakevec.spark as lvs
        df = session.createDataFrame([(int(i), [float(x) for x in v]) for i, v in zip(d["id"], d["vector"])],
                                     "id long, vector array<float>")
        with pytest.raises(lakevec.SchemaError, match="missing column"):
            lvs.write(df, t)
    else:
        import lakevec.ray as lvr
        import ray.data
        ds = ray.data.from_items([{"id": int(i), "vector": v} for i, v in zip(d["id"], d["vector"])])
        with pytest.raises(lakevec.SchemaError, match="missing column"):
            lvr.write(ds, t)
    assert t.count_rows() == N


def _filled_table(lake):
    t = lake.create_table("t", dim=DIM)
    for k in range(3):  # several fragments
        t.add(_rows(1000, start=k * 1000, seed=k))
    return t


def test_read_with_filter_returns_exactly_the_filtered_rows(kind, storage, lake):
    name, session = kind
    t = _filled_table(lake)
    uri = f"{lake.uri}/t"  # a table URI string works as well as a Table
    want = t.to_arrow(columns=["id", "tag", "vector"], filter="tag = 3 AND id >= 500").sort_by("id")
    if name == "spark":
        import lakevec.spark as lvs
        df = lvs.read(uri, columns=["id", "tag", "vector"], filter="tag = 3 AND id >= 500",
                      storage_options=storage.storage_options, task_bytes=20_000)
        assert df.rdd.getNumPartitions() >= 3  # one task per fragment group
        assert df.count() == want.num_rows
        got = pa.Table.from_pandas(df.toPandas(), preserve_index=False).sort_by("id")
        assert str(df.schema["vector"].dataType) == "ArrayType(FloatType(), True)"
    else:
        import lakevec.ray as lvr
        ds = lvr.read(uri, columns=["id", "tag", "vector"], filter="tag = 3 AND id >= 500",
                      storage_options=storage.storage_options, task_bytes=20_000)
        assert ds.count() == want.num_rows  # unlike read_lance(filter=).count()
        import ray
        got = pa.concat_tables(ray.get(ds.to_arrow_refs())).sort_by("id")
    assert want.num_rows == 500  # tag = id % 5 in each fragment of 1000 rows: 3 x 200 - 100
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    assert set(got.column("tag").to_pylist()) == {3}
    gv = np.stack([np.asarray(v, dtype=np.float32) for v in got.column("vector").to_pylist()])
    wv = np.stack([np.asarray(v, dtype=np.float32) for v in want.column("vector").to_pylist()])
    np.testing.assert_array_equal(gv, wv)


def test_read_all_rows_columns_and_errors(kind, local_lake):
    name, session = kind
    t = _filled_table(local_lake)
    mod = __import__("lakevec." + name, fromlist=["read"])
    if name == "spark":
        df = mod.read(t)
        assert df.columns == ["id", "vector", "tag"] and df.count() == 3000  # never the internal _partition
        assert mod.read(t, filter="id < 0").count() == 0
    else:
        ds = mod.read(t)
        assert ds.schema().names == ["id", "vector", "tag"] and ds.count() == 3000
        assert mod.read(t, filter="id < 0").count() == 0
    with pytest.raises(lakevec.InvalidArgumentError, match="invalid filter"):
        mod.read(t, filter="tag >")
    with pytest.raises(lakevec.InvalidArgumentError, match="unknown column"):
        mod.read(t, columns=["id", "nope"])
    with pytest.raises(lakevec.TableNotFoundError):
        mod.read(f"{local_lake.uri}/missing")
    # time travel: the version given is read, not the latest
    v1 = t.version
    t.add(_rows(10, start=50_000))
    old = mod.read(t, version=v1, filter="id >= 50000")
    assert old.count() == 0 and mod.read(t, filter="id >= 50000").count() == 10
