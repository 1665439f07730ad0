"""The three engines (real Ray with 2 CPUs, real Spark local[2]) return the same pairs, on a local lake and
on the S3 server; Spark DataFrames and Ray Datasets go in and come out."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from join_helpers import brute_knn, by_left, fsl, make_table, pair_set, vectors

import lakevec

NLIST = 8


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Local-engine results on a local lake: what every engine must reproduce."""
    lake = lakevec.connect(str(tmp_path_factory.mktemp("ref") / "lake"))
    x = vectors(1500, seed=51, clusters=10)
    t = make_table(lake, "t", x, nlist=NLIST)
    q = vectors(200, seed=52, clusters=10)
    left = {"id": np.arange(200) + 1000, "vector": q}
    return {
        "x": x, "q": q,
        "approx": pair_set(lakevec.knn_join(left, t, k=4, nprobe=2)),
        "dedup": pair_set(lakevec.knn_join(t, t, k=4, nprobe=2, dedup=True)),
        "range": pair_set(lakevec.knn_join(left, t, k=None, radius=4.0, nprobe=2)),
    }


def test_engines_return_the_same_pairs(engine, storage, lake, reference):
    x, q = reference["x"], reference["q"]
    t = make_table(lake, "t", x, nlist=NLIST)
    left = {"id": np.arange(200) + 1000, "vector": q}
    idx, _ = brute_knn(q, x, 4, "l2")
    exact = {(1000 + i, int(j)) for i in range(200) for j in idx[i]}
    for plan in ("grouped", "shuffle"):
        res = lakevec.knn_join(left, t, k=4, nprobe=NLIST, plan=plan, engine=engine)
        assert res.report.engine == engine
        assert pair_set(res) == exact, plan  # every partition probed: brute force
        got = by_left(res)  # in left order, ranks 0..k-1
        assert list(got) == list(range(1000, 1200))
        if engine != "local":
            assert res.report.tasks["score"] >= 2  # really split over the engine's two cores
    # approximate joins: the same pairs as the local engine (same partitions probed, same ranking)
    assert pair_set(lakevec.knn_join(left, t, k=4, nprobe=2, engine=engine)) == reference["approx"]
    assert pair_set(lakevec.knn_join(t, t, k=4, nprobe=2, engine=engine, dedup=True)) == reference["dedup"]
    assert pair_set(lakevec.knn_join(left, t, k=None, radius=4.0, nprobe=2, engine=engine)) == reference["range"]
    if storage.kind == "s3":  # scratch files lived in the lake and are gone
        assert not [i for i in lake.store.list(lake.loc.join("_scratch"), recursive=True) if i.type.name == "File"]


@pytest.mark.spark
def test_spark_dataframe_in_and_out(spark_session, local_lake, reference, tmp_path):
    import lakevec.spark as lvs
    x, q = reference["x"], reference["q"]
    t = make_table(local_lake, "t", x, nlist=NLIST, extra={"title": np.array([f"t{i}" for i in range(1500)],
                                                                             dtype=object)})
    arrow = pa.table({"id": np.arange(200) + 1000, "vector": pa.array(q.tolist(), pa.list_(pa.float32())),
                      "tag": np.arange(200) % 3})
    df = spark_session.createDataFrame(arrow).repartition(3)
    out = lvs.knn_join(df, t, k=4, nprobe=2, columns=["tag", "title"])
    assert out.report.tasks["assign"] == 3  # phase 1 ran in the DataFrame's 3 partitions
    got = out.toArrow()
    assert pair_set(got) == reference["approx"]
    assert got.column_names == ["left_id", "right_id", "distance", "rank", "left_tag", "right_title"]
    for l, r, tag, title in zip(*(got.column(c).to_pylist() for c in ("left_id", "right_id", "left_tag", "right_title"))):
        assert tag == (l - 1000) % 3 and title == f"t{r}"
    # written once to a Parquet folder; the DataFrame reads the committed parts
    dest = str(tmp_path / "pairs")
    first = lvs.knn_join(df, t, k=4, nprobe=2, output=dest, idempotency_key="nightly-1")
    assert pair_set(first.toArrow()) == reference["approx"] and first.report.output["committed"]
    again = lvs.knn_join(df, t, k=4, nprobe=2, output=dest, idempotency_key="nightly-1")
    assert again.report.output["skipped"] and again.count() == 800
    # a bad row inside a partition: the same ValidationError as on the local engine
    bad = spark_session.createDataFrame(pa.table({"id": pa.array([1, 2, None]), "vector": pa.array(
        q[:3].tolist(), pa.list_(pa.float32()))}))
    with pytest.raises(lakevec.ValidationError, match="null id"):
        lvs.knn_join(bad, t, k=2)
    with pytest.raises(lakevec.SchemaError, match="no vector column 'emb'"):
        lvs.knn_join(df, t, k=2, vector_column="emb")


@pytest.mark.ray
def test_ray_dataset_in_and_out(ray_cluster, local_lake, reference):
    import ray.data

    import lakevec.ray as lvr
    x, q = reference["x"], reference["q"]
    t = make_table(local_lake, "t", x, nlist=NLIST)
    ds = ray.data.from_arrow(pa.table({"id": np.arange(200) + 1000, "vector": fsl(q)})).repartition(4)
    out = lvr.knn_join(ds, t, k=4, nprobe=2)
    assert out.report.tasks["assign"] == 4
    got = pa.concat_tables(ray.get(out.to_arrow_refs()))
    assert pair_set(got) == reference["approx"]
    # tensor columns (numpy batches) work as vectors too
    ds2 = ray.data.from_items([{"id": 1000 + i, "vector": q[i]} for i in range(200)])
    assert pair_set(pa.concat_tables(ray.get(lvr.knn_join(ds2, t, k=4, nprobe=2).to_arrow_refs()))) == \
        reference["approx"]
