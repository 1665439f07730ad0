"""Self-joins: no row pairs with itself, and dedup keeps every unordered pair that either side found, once."""
from __future__ import annotations

import numpy as np
import pytest
from join_helpers import brute_knn, by_left, distances, make_table, pair_set, vectors

import lakevec

NLIST = 8


@pytest.mark.parametrize("plan", ["grouped", "shuffle"])
def test_self_join_equals_brute_force_without_self(local_lake, plan):
    x = vectors(1200, seed=21)
    t = make_table(local_lake, "t", x, nlist=NLIST)
    res = lakevec.knn_join(t, t, k=4, nprobe=NLIST, plan=plan)
    assert res.report.self_join
    got = by_left(res)
    idx, _ = brute_knn(x, x, 4, "l2", exclude_self=True)
    assert len(got) == 1200
    for i in range(1200):
        assert got[i] == idx[i].tolist()
    # the same table opened twice (another Table object, unpinned) is a self-join too
    again = lakevec.knn_join(local_lake.open_table("t"), t, k=4, nprobe=NLIST, plan=plan)
    assert again.report.self_join and pair_set(again) == pair_set(res)


@pytest.mark.parametrize("plan", ["grouped", "shuffle"])
@pytest.mark.parametrize("id_kind", ["int", "string"])
def test_dedup_keeps_every_pair_either_side_found_once(local_lake, plan, id_kind):
    x = vectors(1500, seed=22, clusters=12)
    ids = None if id_kind == "int" else np.array([f"doc-{(i * 7919) % 1500:04d}" for i in range(1500)], dtype=object)
    t = make_table(local_lake, "t", x, ids=ids, nlist=16)
    # an approximate join (nprobe 2 of 16), where a finds b but b may not find a
    directed = lakevec.knn_join(t, t, k=5, nprobe=2, plan=plan)
    dd = lakevec.knn_join(t, t, k=5, nprobe=2, plan=plan, dedup=True)
    d_pairs = pair_set(directed)
    assert not any(a == b for a, b in d_pairs)  # no self pairs
    union = {(min(a, b), max(a, b)) for a, b in d_pairs}
    asym = {(a, b) for a, b in d_pairs if (b, a) not in d_pairs}
    assert len(asym) > 100  # the case the old dedup lost (it kept a pair only if the smaller id found it)
    got = list(zip(dd.column("left_id").to_pylist(), dd.column("right_id").to_pylist()))
    assert len(got) == len(set(got))  # each pair once
    assert all(a < b for a, b in got)  # oriented, so no mirrored duplicates
    assert set(got) == union  # no pair lost, none invented
    # distance of each dedup pair is the distance of (either) direction; rank is the better of the two
    dist = {(a, b): d for a, b, d in zip(*(directed.column(c).to_pylist() for c in ("left_id", "right_id", "distance")))}
    rank = {(a, b): r for a, b, r in zip(*(directed.column(c).to_pylist() for c in ("left_id", "right_id", "rank")))}
    for a, b, d, r in zip(*(dd.column(c).to_pylist() for c in ("left_id", "right_id", "distance", "rank"))):
        ds = [dist[p] for p in ((a, b), (b, a)) if p in dist]
        assert min(ds) == pytest.approx(d, rel=1e-5)
        assert r == min(rank[p] for p in ((a, b), (b, a)) if p in rank)
    assert dd.report.pairs == len(union)


def test_self_join_with_duplicate_vectors(local_lake):
    """Identical vectors (distance 0 to each other and to themselves): still never a self pair, k per row."""
    base = vectors(200, seed=23)
    x = np.concatenate([base, base[:50], base[:50]])  # rows 0..49 appear three times
    t = make_table(local_lake, "t", x, nlist=4)
    res = lakevec.knn_join(t, t, k=3, nprobe=4)
    got = by_left(res)
    assert all(len(v) == 3 and i not in v for i, v in got.items())
    for i in range(50):  # the two copies of a tripled row are its nearest, at distance 0
        assert set(got[i][:2]) == {200 + i, 250 + i}
    d = res.table.filter(res.column("left_id").to_numpy() < 50).column("distance").to_numpy()
    assert (d.reshape(50, 3)[:, :2] <= 1e-4).all()  # kNN distances: float32 |q|^2 - 2q.x + |x|^2


def test_range_self_join_dedup(local_lake):
    x = vectors(800, seed=24)
    t = make_table(local_lake, "t", x, nlist=NLIST)
    d = distances(x, x, "l2")
    r = float(np.quantile(d[np.triu_indices(800, 1)], 0.002))
    res = lakevec.knn_join(t, t, k=None, radius=r, nprobe=NLIST, dedup=True)
    exact = {(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(d <= r, 1)))}
    assert pair_set(res) == exact and len(exact) > 100


def test_exact_duplicates_at_radius_zero(local_lake):
    """Range distances are recomputed directly: identical vectors are at exactly 0, for every metric."""
    base = vectors(150, seed=25)
    x = np.concatenate([base, base[:30], base[:30]])
    want = {(i, 150 + i) for i in range(30)} | {(i, 180 + i) for i in range(30)} | \
        {(150 + i, 180 + i) for i in range(30)}
    for metric in ("l2", "cosine"):
        t = make_table(local_lake, f"t_{metric}", x, metric, nlist=4)
        zero = lakevec.knn_join(t, t, k=None, radius=0.0, nprobe=4, dedup=True)
        assert pair_set(zero) == want, metric
        assert set(zero.column("distance").to_pylist()) == {0.0}
