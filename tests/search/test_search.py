"""Table.search against numpy brute force: metrics, shapes, k, columns, pre-filters, bad queries, SIFT10K
recall (local and S3)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import sift10k
from core_helpers import brute_force, hermetic_aws, result_matrix  # noqa: F401

import lakevec

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 16
METRICS = ["l2", "cosine", "dot"]


def _data(n=700, dim=DIM, seed=0, start=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, dim)).astype(np.float32) * 4
    x = centers[rng.integers(0, 10, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    ids = np.arange(start, start + n, dtype=np.int64)
    return {"id": ids, "vector": x.astype(np.float32), "tag": ids % 7, "name": [f"row-{i}" for i in ids]}


def _queries(m=6, dim=DIM, seed=99):
    return (np.random.default_rng(seed).standard_normal((m, dim)) * 4).astype(np.float32)


def _assert_exact(t, d, q, k, metric, **kw):
    idx, dist = brute_force(d["vector"], q, k, metric)
    res = t.search(q, k=k, **kw)
    ids, got = result_matrix(res, len(q), k)
    assert np.array_equal(ids, np.asarray(d["id"])[idx])
    np.testing.assert_allclose(got, dist, rtol=1e-4, atol=1e-4)
    return res


@pytest.mark.parametrize("metric", METRICS)
def test_unindexed_search_is_exact(lake, metric):
    t = lake.create_table("t", dim=DIM, metric=metric)
    d = _data()
    t.add(d)
    res = _assert_exact(t, d, _queries(), 10, metric)
    assert res.column_names == ["query_index", "id", "distance", "rank"]
    assert t.last_search_stats["nprobe"] is None


@pytest.mark.parametrize("metric", METRICS)
def test_indexed_search_with_all_partitions_is_exact(lake, metric):
    t = lake.create_table("t", dim=DIM, metric=metric)
    d = _data()
    t.add(d)
    t.build_index(num_partitions=8)
    _assert_exact(t, d, _queries(), 10, metric, nprobe=8)
    _assert_exact(t, d, _queries(), 10, metric, nprobe=1000)  # nprobe above nlist is capped


def test_distance_definitions(lake):
    x = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 4.0]], np.float32)
    q = np.array([1.0, 1.0], np.float32)
    expected = {
        "l2": {0: 1.0, 1: 2.0, 2: 25.0},  # squared L2
        "cosine": {0: 1 - 1 / np.sqrt(2), 1: 1 - 1 / np.sqrt(2), 2: 1 - 1 / (5 * np.sqrt(2))},  # 1 - cos
        "dot": {0: -1.0, 1: -2.0, 2: -1.0},  # negative inner product
    }
    for metric, want in expected.items():
        t = lake.create_table(f"t_{metric}", dim=2, metric=metric)
        t.add({"id": np.arange(3), "vector": x})
        res = t.search(q, k=3)
        got = dict(zip(res.column("id").to_pylist(), res.column("distance").to_pylist()))
        assert got == pytest.approx(want, abs=1e-6), metric
        dists = res.column("distance").to_pylist()
        assert dists == sorted(dists), "smaller must be nearer"
        assert res.schema.field("distance").type == pa.float32()


def test_single_and_batch_queries(lake):
    t = lake.create_table("t", dim=DIM)
    d = _data(200)
    t.add(d)
    q = _queries(3)
    single = t.search(q[1], k=5)
    assert single.column("query_index").to_pylist() == [0] * 5
    assert single.column("rank").to_pylist() == list(range(5))
    batch = t.search(q, k=5)
    assert batch.num_rows == 15
    row1 = batch.filter(pa.compute.equal(batch.column("query_index"), 1))
    assert row1.column("id").to_pylist() == single.column("id").to_pylist()
    assert t.search(q.tolist(), k=5).column("id").to_pylist() == batch.column("id").to_pylist()  # lists work
    assert t.search(q.astype(np.float64), k=5).column("id").to_pylist() == batch.column("id").to_pylist()


@pytest.mark.parametrize("indexed", [False, True])
def test_k_larger_than_rows(lake, indexed):
    t = lake.create_table("t", dim=DIM)
    d = _data(60)
    t.add(d)
    if indexed:
        t.build_index(num_partitions=3)
    q = _queries(2)
    res = t.search(q, k=100, nprobe=3)
    assert res.num_rows == 2 * 60
    for qi in range(2):
        part = res.filter(pa.compute.equal(res.column("query_index"), qi))
        assert part.column("rank").to_pylist() == list(range(60))
        assert sorted(part.column("id").to_pylist()) == list(range(60))
        dist = part.column("distance").to_pylist()
        assert dist == sorted(dist)


def test_columns_are_aligned_with_ids(lake):
    t = lake.create_table("t", dim=DIM)
    d = _data(300)
    t.add(d)
    t.build_index(num_partitions=4)
    t.add(_data(50, start=1000, seed=4))  # some rows in later fragments too
    res = t.search(_queries(4), k=20, nprobe=4, columns=["name", "tag", "vector"])
    assert res.column_names == ["query_index", "id", "distance", "rank", "name", "tag", "vector"]
    ids = res.column("id").to_pylist()
    assert res.column("name").to_pylist() == [f"row-{i}" for i in ids]
    assert res.column("tag").to_pylist() == [i % 7 for i in ids]
    vec = np.stack(res.column("vector").to_numpy(zero_copy_only=False))
    allx = {**dict(zip(d["id"].tolist(), d["vector"]))}
    extra = _data(50, start=1000, seed=4)
    allx.update(dict(zip(extra["id"].tolist(), extra["vector"])))
    np.testing.assert_array_equal(vec, np.stack([allx[i] for i in ids]))
    assert t.search(_queries(1), k=3, columns="name").column_names[-1] == "name"


@pytest.mark.parametrize("bad", [["nope"], ["_partition"], ["id"], ["distance"], [3]])
def test_bad_columns(lake, bad):
    t = lake.create_table("t", dim=DIM)
    t.add(_data(20))
    with pytest.raises(lakevec.InvalidArgumentError):
        t.search(_queries(1), k=3, columns=bad)


@pytest.mark.parametrize("indexed", [False, True])
def test_filter_is_applied_before_scoring(lake, indexed):
    t = lake.create_table("t", dim=DIM)
    d = _data(1400)
    t.add(d)
    if indexed:
        t.build_index(num_partitions=16)
    q = _queries(5)
    res = t.search(q, k=10, nprobe=1, filter="tag = 3", columns=["tag"])
    assert res.num_rows == 50, "a pre-filter must return k rows when k rows match"
    assert set(res.column("tag").to_pylist()) == {3}
    if not indexed:  # exact: equals brute force over the matching rows
        keep = d["tag"] == 3
        sub = {"id": d["id"][keep], "vector": d["vector"][keep]}
        _assert_exact(t, sub, q, 10, "l2", filter="tag = 3")


def test_filter_matching_rows_outside_the_probed_partitions(lake):
    t = lake.create_table("t", dim=DIM)
    rng = np.random.default_rng(3)
    near = rng.standard_normal((600, DIM)).astype(np.float32)  # around the origin
    far = rng.standard_normal((12, DIM)).astype(np.float32) + 40  # a distant cluster
    x = np.concatenate([near, far])
    kind = ["near"] * 600 + ["far"] * 12
    t.add({"id": np.arange(612), "vector": x, "kind": kind})
    t.build_index(num_partitions=8)
    q = np.zeros((2, DIM), np.float32)
    res = t.search(q, k=10, nprobe=1, filter="kind = 'far'")
    assert res.num_rows == 20
    assert set(res.column("id").to_pylist()) <= set(range(600, 612))
    idx, dist = brute_force(far, q, 10, "l2")
    ids, got = result_matrix(res, 2, 10)
    assert np.array_equal(ids, idx + 600)
    # fewer matching rows than k: all of them come back
    res = t.search(q, k=30, nprobe=1, filter="kind = 'far'")
    assert res.num_rows == 24
    # no matching row: an empty result with the right columns
    res = t.search(q, k=5, filter="kind = 'none'")
    assert res.num_rows == 0 and res.column_names[:4] == ["query_index", "id", "distance", "rank"]


@pytest.mark.parametrize("flt", ["tag = = 3", "no_such_column > 1", "", "   ", 5])
def test_invalid_filter(lake, flt):
    t = lake.create_table("t", dim=DIM)
    t.add(_data(50))
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        t.search(_queries(1), k=3, filter=flt)
    assert "filter" in str(ei.value)


@pytest.mark.parametrize("bad,needle", [
    (np.ones(DIM + 1, np.float32), "shape"),
    (np.ones((2, DIM - 1), np.float32), "shape"),
    (np.ones((2, 2, DIM), np.float32), "shape"),
    (np.array([[np.nan] * DIM]), "nan"),
    (np.array([[np.inf] * DIM]), "inf"),
    (["a"] * DIM, "numeric"),
    (np.array([["x"] * DIM]), "numeric"),
    ("a string", "numeric"),
    ([[1.0] * DIM, [1.0] * (DIM - 2)], ""),
    (None, ""),
])
def test_bad_queries(lake, bad, needle):
    t = lake.create_table("t", dim=DIM)
    t.add(_data(30))
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        t.search(bad, k=3)
    assert needle in str(ei.value).lower()


def test_zero_query_on_cosine_table(lake):
    t = lake.create_table("t", dim=DIM, metric="cosine")
    t.add(_data(30))
    with pytest.raises(lakevec.InvalidArgumentError, match="zero"):
        t.search(np.zeros(DIM, np.float32), k=3)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3", None])
def test_bad_k_and_nprobe(lake, k):
    t = lake.create_table("t", dim=DIM)
    t.add(_data(30))
    with pytest.raises(lakevec.InvalidArgumentError, match="k must be"):
        t.search(_queries(1), k=k)
    if k is not None:
        with pytest.raises(lakevec.InvalidArgumentError, match="nprobe"):
            t.search(_queries(1), k=3, nprobe=k)


def test_search_of_an_empty_table(lake):
    t = lake.create_table("t", dim=DIM)
    res = t.search(_queries(2), k=5)
    assert res.num_rows == 0
    assert res.column_names == ["query_index", "id", "distance", "rank"]


def test_empty_query_batch(lake):
    t = lake.create_table("t", dim=DIM)
    t.add(_data(30))
    res = t.search(np.empty((0, DIM), np.float32), k=5)
    assert res.num_rows == 0 and res.column_names == ["query_index", "id", "distance", "rank"]


def test_string_ids_are_returned(lake):
    t = lake.create_table("s", dim=DIM, id_type="string")
    d = _data(100)
    t.add({"id": [f"doc-{i}" for i in d["id"]], "vector": d["vector"]})
    res = t.search(d["vector"][[5, 9]], k=1)
    assert res.column("id").to_pylist() == ["doc-5", "doc-9"]
    assert res.schema.field("id").type == pa.string()


def test_search_sees_new_rows_and_deleted_tables_fail_cleanly(lake):
    t = lake.create_table("t", dim=DIM)
    d = _data(100)
    t.add(d)
    assert t.search(d["vector"][0], k=1).column("id").to_pylist() == [0]
    extra = _data(5, start=500, seed=9)
    t.add(extra)
    assert t.search(extra["vector"][2], k=1).column("id").to_pylist() == [502]


def _recall(res, gt, m, k=10):
    ids, _ = result_matrix(res, m, k)
    return float(np.mean([len(set(ids[i]) & set(gt[i, :k])) / k for i in range(m)]))


def test_sift10k_recall_at_default_nprobe(lake):
    base, queries, gt = sift10k()
    t = lake.create_table("sift", dim=128)
    t.add({"id": np.arange(len(base)), "vector": base})
    unindexed = _recall(t.search(queries[:20], k=10), gt, 20)
    assert unindexed == 1.0  # exact before the index
    meta = t.build_index()
    res = t.search(queries, k=10)
    recall = _recall(res, gt, len(queries))
    stats = t.last_search_stats
    assert recall >= 0.95, f"recall@10 {recall:.3f} at default nprobe {meta.default_nprobe}"
    assert stats["nprobe"] == meta.default_nprobe < meta.num_partitions
    assert stats["partitions_read"] <= meta.num_partitions


def test_huge_k_is_capped_by_the_row_count(lake):
    t = lake.create_table("t", dim=DIM)
    t.add(_data(40))
    res = t.search(_queries(2), k=2**40)  # must not try to allocate k slots per query
    assert res.num_rows == 80


def test_cosine_self_matches_are_zero_not_negative(lake):
    """1 - cos of a unit vector with itself rounds below zero in float32: distances are clamped at 0."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    t = lake.create_table("cos", dim=16, metric="cosine")
    t.add({"id": np.arange(200), "vector": x})
    d = t.search(x, k=1).column("distance").to_numpy()
    assert (d >= 0).all() and d.max() < 1e-5


@pytest.mark.parametrize("nvme", [False, True], ids=["memory-cache", "nvme-cache"])
def test_fragments_with_deleted_rows_are_read_from_their_files_without_the_deleted_rows(storage, tmp_path, nvme):
    """Rows deleted from a fragment (deletion vectors, as optimize leaves them) never come back, though
    the fragment is read from its (cached) data file: the version before the delete still has them, the
    version after does not, whatever was cached first."""
    opts = {"cache_dir": str(tmp_path / "nvme")} if nvme else {}
    lk = lakevec.connect(storage.uri, storage_options=storage.storage_options, **opts)
    t = lk.create_table("t", dim=DIM)
    d = _data(600)
    t.add(d)
    t.build_index(num_partitions=6)
    q = _queries(8)
    before = t.version
    _assert_exact(t, d, q, 10, "l2", nprobe=6)  # caches every data file
    t._open_latest().delete("id % 3 = 0")  # a deletion file in every fragment (another Lance writer)
    assert all(f.has_deletions and f.deletion for f in t.snapshot().fragments)
    keep = d["id"] % 3 != 0
    live = {"id": d["id"][keep], "vector": d["vector"][keep]}
    res = _assert_exact(t, live, q, 10, "l2", nprobe=6)
    assert not set(res.column("id").to_pylist()) & set(d["id"][~keep].tolist())
    _assert_exact(t, live, q, 10, "l2", nprobe=6, filter="tag < 7")  # the filter's row mask on the kept rows
    _assert_exact(t.checkout(before), d, q, 10, "l2", nprobe=6)  # time travel: the same files, all rows
    t._open_latest().delete("id % 3 = 1")  # a second deletion file replaces the first
    keep = d["id"] % 3 == 2
    _assert_exact(t, {"id": d["id"][keep], "vector": d["vector"][keep]}, q, 10, "l2", nprobe=6)
    if nvme and not storage.uri.startswith("/"):
        assert t.last_search_stats["io"]["cache_hits"] > 0  # deletion fragments come from the NVMe copy
