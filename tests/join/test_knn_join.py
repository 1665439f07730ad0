"""kNN and range joins on the local engine: equal to brute force with every partition probed, for every
metric, id type, plan and kind of left input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from join_helpers import brute_knn, by_left, distances, fsl, make_table, pair_set, vectors

import lakevec

NLIST = 8


@pytest.mark.parametrize("plan", ["grouped", "shuffle"])
@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
@pytest.mark.parametrize("id_kind", ["int", "string"])
def test_all_partitions_equal_brute_force(local_lake, metric, id_kind, plan):
    x = vectors(1500, seed=1)
    ids = None if id_kind == "int" else np.array([f"r{i:05d}" for i in range(len(x))], dtype=object)
    right = make_table(local_lake, "right", x, metric, ids=ids, nlist=NLIST)
    q = vectors(120, seed=2)
    qids = np.arange(len(q)) + 50_000 if id_kind == "int" else np.array([f"q{i}" for i in range(len(q))], dtype=object)
    res = lakevec.knn_join({"id": qids, "vector": q}, right, k=5, nprobe=NLIST, plan=plan)
    assert res.report.plan == plan
    assert res.column_names == ["left_id", "right_id", "distance", "rank"]
    idx, dist = brute_knn(q, x, 5, metric)
    got = by_left(res)
    assert len(got) == len(q)
    rid = (lambda i: int(i)) if ids is None else (lambda i: ids[i])
    for i, lid in enumerate(qids.tolist()):
        assert got[lid] == [rid(j) for j in idx[i]], f"row {i}"
    # distances follow the metric's definition (float32 kernel vs float64 brute force)
    d_got = np.asarray(res.column("distance").to_pylist()).reshape(len(q), 5)
    np.testing.assert_allclose(d_got, dist, rtol=1e-4, atol=2e-4)
    # sorted by left row (input order) then rank
    assert res.column("left_id").to_pylist() == np.repeat(qids, 5).tolist()


def test_left_input_kinds_give_the_same_pairs(storage, lake, tmp_path):
    x = vectors(1200, seed=3)
    right = make_table(lake, "right", x, nlist=NLIST)
    q = vectors(90, seed=4)
    qid = np.arange(90) * 7
    ref = pair_set(lakevec.knn_join({"id": qid, "vector": q}, right, k=4, nprobe=NLIST))
    idx, _ = brute_knn(q, x, 4, "l2")
    assert ref == {(int(qid[i]), int(j)) for i in range(len(q)) for j in idx[i]}
    arrow = pa.table({"key": pa.array(qid), "emb": fsl(q), "tag": pa.array(qid % 3)})
    # Parquet files (local or on the S3 server), a user id/vector column name, two files
    if storage.kind == "local":
        folder = str(tmp_path / "left")
        import os
        os.makedirs(folder)
        pq.write_table(arrow.slice(0, 50), f"{folder}/a.parquet", row_group_size=20)
        pq.write_table(arrow.slice(50), f"{folder}/b.parquet")
    else:
        from lakevec.store.location import parse_location
        from lakevec.store.objects import ObjectStore
        folder = storage.uri + "-left"
        st = ObjectStore(parse_location(folder, storage.storage_options))
        for name, part in (("a", arrow.slice(0, 50)), ("b", arrow.slice(50))):
            buf = pa.BufferOutputStream()
            pq.write_table(part, buf, row_group_size=20)
            st.write_bytes(f"{folder}/{name}.parquet", buf.getvalue().to_pybytes())
    kinds = {
        "parquet": lakevec.knn_join(folder, right, k=4, nprobe=NLIST, id_column="key", vector_column="emb",
                                    storage_options=storage.storage_options),
        "arrow": lakevec.knn_join(arrow, right, k=4, nprobe=NLIST, id_column="key", vector_column="emb"),
        "reader": lakevec.knn_join(pa.RecordBatchReader.from_batches(arrow.schema, arrow.to_batches(max_chunksize=30)),
                                   right, k=4, nprobe=NLIST, id_column="key", vector_column="emb"),
        "dataset": lakevec.knn_join(pads.dataset(arrow), right, k=4, nprobe=NLIST, id_column="key",
                                    vector_column="emb"),
        "pandas": lakevec.knn_join(pd.DataFrame({"id": qid, "vector": list(q)}), right, k=4, nprobe=NLIST),
        "list vectors": lakevec.knn_join(pa.table({"id": qid, "vector": pa.array(q.tolist())}), right, k=4,
                                         nprobe=NLIST),
    }
    lt = lake.create_table("left", dim=8)
    lt.add({"id": qid, "vector": q})
    kinds["table"] = lakevec.knn_join(lt, right, k=4, nprobe=NLIST)
    for name, res in kinds.items():
        assert pair_set(res) == ref, name
        assert res.report.rows_left == 90, name


def test_default_nprobe_is_approximate_and_reported(local_lake):
    x = vectors(3000, seed=5, clusters=20)
    right = make_table(local_lake, "right", x, nlist=16)
    q = vectors(300, seed=6, clusters=20)
    res = lakevec.knn_join({"id": np.arange(300), "vector": q}, right, k=10, nprobe=2, recall_sample=300)
    idx, _ = brute_knn(q, x, 10, "l2")
    got = by_left(res)
    true_recall = np.mean([len(set(got[i]) & set(idx[i].tolist())) / 10 for i in range(300)])
    assert true_recall < 1.0  # nprobe 2 of 16 misses some neighbours...
    # ...and the report's estimate, a sample of 300 of 300 rows searched exactly, is that recall
    assert res.report.recall["sample_rows"] == 300
    assert res.report.recall["estimate"] == pytest.approx(true_recall, abs=1e-4)
    small = lakevec.knn_join({"id": np.arange(300), "vector": q}, right, k=10, nprobe=2)  # default sample 200
    assert small.report.recall["sample_rows"] == 200
    assert abs(small.report.recall["estimate"] - true_recall) <= 0.05


def test_range_join_equals_brute_force_and_combines_with_k(local_lake):
    x = vectors(1000, seed=7)
    right = make_table(local_lake, "right", x, nlist=NLIST)
    q = vectors(100, seed=8)
    d = distances(q, x, "l2")
    r = float(np.quantile(d, 0.01))
    res = lakevec.knn_join({"id": np.arange(100), "vector": q}, right, k=None, radius=r, nprobe=NLIST)
    exact = {(int(i), int(j)) for i, j in zip(*np.nonzero(d <= r))}
    assert pair_set(res) == exact and len(exact) > 200
    assert max(res.column("distance").to_pylist()) <= r
    got = by_left(res)  # ranks 0.. per row, nearest first (float32 kernel: equal up to rounding)
    for i, lst in got.items():
        assert np.all(np.diff(d[i, lst]) >= -1e-4), i
    # k and radius: the k nearest within the radius
    both = lakevec.knn_join({"id": np.arange(100), "vector": q}, right, k=3, radius=r, nprobe=NLIST)
    want = {(i, j) for i, lst in got.items() for j in lst[:3]}
    assert pair_set(both) == want
    # a per-row cap: the nearest pairs are kept, the capped rows are counted
    cap = lakevec.knn_join({"id": np.arange(100), "vector": q}, right, k=None, radius=r, nprobe=NLIST,
                           max_pairs_per_row=2)
    assert pair_set(cap) == {(i, j) for i, lst in got.items() for j in lst[:2]}
    assert cap.report.rows_capped == sum(1 for lst in got.values() if len(lst) > 2) > 0
    assert res.report.rows_capped == 0


def test_columns_from_both_sides_and_filters(local_lake):
    x = vectors(800, seed=9)
    right = make_table(local_lake, "right", x, nlist=NLIST,
                       extra={"title": np.array([f"t{i}" for i in range(800)], dtype=object),
                              "lang": np.array(["en", "fr"] * 400, dtype=object)})
    q = vectors(40, seed=10)
    left = pa.table({"id": np.arange(40), "vector": fsl(q), "title": [f"q{i}" for i in range(40)]})
    res = lakevec.knn_join(left, right, k=3, nprobe=NLIST, columns=["title"], right_columns=["lang"])
    assert res.column_names == ["left_id", "right_id", "distance", "rank", "left_title", "right_title", "right_lang"]
    for lid, rid, lt, rt, lang in zip(*(res.column(c).to_pylist() for c in
                                        ("left_id", "right_id", "left_title", "right_title", "right_lang"))):
        assert lt == f"q{lid}" and rt == f"t{rid}" and lang == ("en" if rid % 2 == 0 else "fr")
    # right_filter: pre-filtered, so k rows per left row come from the matching rows only
    fr = lakevec.knn_join(left, right, k=3, nprobe=NLIST, right_filter="lang = 'fr'")
    odd = np.arange(1, 800, 2)
    idx, _ = brute_knn(q, x[odd], 3, "l2")
    assert pair_set(fr) == {(i, int(odd[j])) for i in range(40) for j in idx[i]}
    # left_filter on a table left
    lt = local_lake.create_table("left", dim=8)
    lt.add({"id": np.arange(40), "vector": q, "g": np.arange(40) % 4})
    lf = lakevec.knn_join(lt, right, k=2, nprobe=NLIST, left_filter="g = 1", columns=["g"])
    assert set(lf.column("left_id").to_pylist()) == set(range(1, 40, 4))
    assert set(lf.column("left_g").to_pylist()) == {1}
    assert lf.report.rows_left == 10


def test_empty_left_and_left_larger_than_the_budget(local_lake):
    x = vectors(600, seed=11)
    right = make_table(local_lake, "right", x, nlist=NLIST)
    empty = lakevec.knn_join({"id": np.zeros(0, np.int64), "vector": np.zeros((0, 8), np.float32)}, right, k=3)
    assert empty.num_rows == 0 and empty.column_names == ["left_id", "right_id", "distance", "rank"]
    assert empty.report.rows_left == 0
    # a left side bigger than the memory budget runs in several tasks, each within the budget
    q = vectors(3000, seed=12)
    ref = lakevec.knn_join({"id": np.arange(3000), "vector": q}, right, k=2, nprobe=NLIST)
    for plan in ("grouped", "shuffle"):
        small = lakevec.knn_join({"id": np.arange(3000), "vector": q}, right, k=2, nprobe=NLIST, plan=plan,
                                 memory_budget=1 << 16)
        assert small.report.tasks["score"] > 1
        for c in ("left_id", "right_id", "rank"):  # the same rows in the same order
            assert small.column(c).to_pylist() == ref.column(c).to_pylist(), c
        np.testing.assert_allclose(small.column("distance").to_numpy(), ref.column("distance").to_numpy(),
                                   rtol=1e-5)  # GEMMs of other shapes round differently
