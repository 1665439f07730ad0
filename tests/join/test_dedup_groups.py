"""lakevec.dedup: duplicate groups equal the connected components computed by brute force, groups larger than
k+1 are found whole, the representative and its distances are right, the output is written once."""
from __future__ import annotations

import numpy as np
import pytest
from join_helpers import distances, make_table, vectors
from scipy.sparse.csgraph import connected_components

import lakevec


def _brute_groups(x, ids, threshold, metric):
    d = distances(x, x, metric)
    adj = d <= threshold
    np.fill_diagonal(adj, False)
    _, label = connected_components(adj, directed=False)
    groups = {}
    for i, lab in enumerate(label):
        groups.setdefault(lab, set()).add(ids[i])
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def _groups_of(res):
    t = res.groups
    out = {}
    for gid, i in zip(t.column("group_id").to_pylist(), t.column("id").to_pylist()):
        out.setdefault(gid, set()).add(i)
    return {frozenset(g) for g in out.values()}


def _near_duplicates(seed=41):
    """Base rows plus groups of near-copies: chains (a ~ b ~ c) and big groups of identical rows."""
    rng = np.random.default_rng(seed)
    base = vectors(600, seed=seed, clusters=10)
    extra = []
    for size, src in ((23, 0), (18, 1), (13, 2), (4, 3)):  # identical copies: groups bigger than k+1
        extra += [base[src]] * (size - 1)
    for src in range(10, 40):  # near copies (small noise): pairs and chains
        extra.append(base[src] + rng.normal(0, 0.01, base.shape[1]).astype(np.float32))
    return np.concatenate([base, np.asarray(extra, dtype=np.float32)])


@pytest.mark.parametrize("metric, threshold", [("l2", 0.01), ("cosine", 2e-5)])
def test_groups_equal_brute_force_connected_components(local_lake, metric, threshold):
    x = _near_duplicates()
    ids = np.arange(len(x))
    t = make_table(local_lake, "t", x, metric, nlist=8)
    res = lakevec.dedup(t, threshold, k=5, nprobe=8)
    want = _brute_groups(x, ids.tolist(), threshold, metric)
    assert _groups_of(res) == want
    sizes = sorted((len(g) for g in want), reverse=True)
    assert sizes[:3] == [23, 18, 13]  # bigger than k+1 = 6, found whole
    s = res.summary
    assert s["groups"] == len(want) and s["largest_group"] == 23
    assert s["rows_in_groups"] == sum(sizes) and s["duplicate_rows"] == sum(sizes) - len(want)
    # group ids by decreasing size; one representative per group; distances from it (0 for identical copies)
    g = res.groups
    gid, size = np.asarray(g.column("group_id").to_pylist()), np.asarray(g.column("group_size").to_pylist())
    assert list(np.unique(gid)) == list(range(len(want)))
    assert all(size[gid == a][0] >= size[gid == b][0] for a, b in zip(range(len(want) - 1), range(1, len(want))))
    rep = np.asarray(g.column("is_representative").to_pylist())
    assert np.bincount(gid[rep]).tolist() == [1] * len(want)
    dist = np.asarray(g.column("distance_to_representative").to_pylist())
    member = np.asarray(g.column("id").to_pylist())
    for a in range(3):  # the big groups of identical rows
        assert (dist[gid == a] == 0).all()
    dd = distances(x[member], x[member[rep][np.searchsorted(gid[rep], gid)]], metric).diagonal()
    np.testing.assert_allclose(dist, dd, atol=1e-5)


def test_k_does_not_cut_groups_but_limits_pairs(local_lake):
    x = _near_duplicates(seed=42)
    t = make_table(local_lake, "t", x, nlist=8)
    for k in (1, 3, 30):
        res = lakevec.dedup(t, 0.01, k=k, nprobe=8)
        assert sorted(len(g) for g in _groups_of(res))[-3:] == [13, 18, 23]
        assert max(res.pairs.column("rank").to_pylist()) < k
    # the join alone with k=3 cannot connect a 23-row group of identical rows into one component? it can
    # only through shared neighbours; dedup does not rely on that: every pair within the threshold is used
    assert lakevec.dedup(t, 0.01, k=1, nprobe=8).summary["pairs"] >= 22 * 23 // 2


def test_string_ids_columns_and_output_once(local_lake, tmp_path):
    x = _near_duplicates(seed=43)
    ids = np.array([f"w{i:05d}" for i in range(len(x))], dtype=object)
    text = np.array([f"text of {i}" for i in range(len(x))], dtype=object)
    t = make_table(local_lake, "t", x, ids=ids, nlist=8, extra={"text": text})
    res = lakevec.dedup(t, 0.01, columns=["text"], nprobe=8)
    assert _groups_of(res) == _brute_groups(x, ids.tolist(), 0.01, "l2")
    g = res.groups
    assert g.column_names == ["group_id", "id", "group_size", "distance_to_representative", "is_representative",
                              "text"]
    for i, tx in zip(g.column("id").to_pylist(), g.column("text").to_pylist()):
        assert tx == f"text of {int(i[1:])}"
    out = str(tmp_path / "groups")
    first = lakevec.dedup(t, 0.01, columns=["text"], nprobe=8, output=out)
    assert not first.skipped and first.groups.equals(g)
    again = lakevec.dedup(t, 0.01, columns=["text"], nprobe=8, output=out)
    assert again.skipped and again.groups.equals(g)
    assert again.summary["groups"] == res.summary["groups"]
    from lakevec.join import read_output
    assert read_output(out).equals(g)
    import os
    assert sorted(f for f in os.listdir(out) if f.endswith(".parquet")).__len__() == 1


def test_bad_dedup_arguments(local_lake):
    t = make_table(local_lake, "t", vectors(200, seed=44), nlist=4)
    for bad in (-1, float("nan"), "0.1", None):
        with pytest.raises(lakevec.InvalidArgumentError, match="threshold"):
            lakevec.dedup(t, bad)
    with pytest.raises(lakevec.InvalidArgumentError, match="k must be"):
        lakevec.dedup(t, 0.1, k=0)
    empty = lakevec.dedup(t, 0.0)  # no duplicates at all
    assert empty.summary["groups"] == 0 and empty.groups.num_rows == 0
