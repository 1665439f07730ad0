"""kNN join: equals brute force, self-join drops self-matches and de-duplicates pairs."""
import numpy as np
import pytest

import lakevec


@pytest.fixture
def tables(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2000, 8)).astype(np.float32)
    lake = lakevec.connect(str(tmp_path / "lake"))
    right = lake.create_table("right", dim=8)
    right.add({"id": np.arange(len(x)), "vector": x})
    right.build_index(num_partitions=10)
    return lake, right, x


def test_join_equals_brute_force(tables, tmp_path):
    lake, right, x = tables
    left = np.random.default_rng(6).standard_normal((300, 8)).astype(np.float32)
    res = lakevec.knn_join({"id": np.arange(300) + 10_000, "vector": left}, right, k=3, nprobe=10)
    assert res.column_names == ["left_id", "right_id", "distance", "rank"]
    d = ((left[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    exact = np.argsort(d, axis=1)[:, :3]
    got = res.sort_by([("left_id", "ascending"), ("rank", "ascending")]).column("right_id").to_numpy().reshape(300, 3)
    assert np.array_equal(got, exact)
    out = lakevec.knn_join({"id": np.arange(300), "vector": left}, right, k=3, nprobe=10,
                           output=str(tmp_path / "pairs.parquet"))
    assert out["rows"] == 900


def test_self_join_drops_self_and_dedups(tables):
    lake, right, x = tables
    res = lakevec.knn_join(right, right, k=2, nprobe=10)
    assert res.num_rows == 2 * len(x)
    assert not np.any(res.column("left_id").to_numpy() == res.column("right_id").to_numpy())
    pairs = lakevec.knn_join(right, right, k=2, nprobe=10, dedup=True)
    l, r = pairs.column("left_id").to_numpy(), pairs.column("right_id").to_numpy()
    assert np.all(l < r) and len(set(zip(l, r))) == len(l)


def test_join_rejects_other_engines(tables):
    _, right, _ = tables
    with pytest.raises(lakevec.InvalidArgumentError, match="local engine"):
        lakevec.knn_join(right, right, engine="ray")
