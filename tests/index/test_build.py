"""build_index: partition purity, sizes, nprobe calibration, appends after indexing, time travel (local, S3)."""
from __future__ import annotations

import lance
import numpy as np
import pyarrow.compute as pc
import pytest
from core_helpers import (TableState, brute_force, hermetic_aws, result_matrix,  # noqa: F401
                          table_vectors)

import lakevec
from lakevec.config import PARTITION_COLUMN, UNASSIGNED

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 16


def _clustered(n, dim=DIM, centers=8, start=0, seed=0):
    """Rows drawn around ``centers`` well-separated points, so IVF partitions are meaningful."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim)).astype(np.float32) * 10
    lab = rng.integers(0, centers, n)
    x = c[lab] + rng.standard_normal((n, dim)).astype(np.float32)
    ids = np.arange(start, start + n, dtype=np.int64)
    return {"id": ids, "vector": x.astype(np.float32), "tag": ids % 5}


def _assert_pure(t):
    """Every fragment's _partition column holds exactly one value, equal to its sidecar partition."""
    snap = t.snapshot()
    ds = lance.dataset(t.data_uri, version=snap.version, storage_options=t.lake.lance_options)
    assert len(ds.get_fragments()) == len(snap.fragments)
    by_id = {f.fragment_id: f for f in snap.fragments}
    seen = {}
    for fr in ds.get_fragments():
        info = by_id[fr.fragment_id]
        vals = pc.unique(fr.to_table(columns=[PARTITION_COLUMN]).column(PARTITION_COLUMN)).to_pylist()
        assert vals == [info.partition], f"fragment {fr.fragment_id}: _partition {vals}, sidecar {info.partition}"
        seen[info.partition] = seen.get(info.partition, 0) + fr.count_rows()
    return seen, snap


def _build(lake, n=1200, nlist=8, metric="l2"):
    t = lake.create_table("t", dim=DIM, metric=metric)
    d = _clustered(n)
    t.add(d)
    meta = t.build_index(num_partitions=nlist)
    return t, d, meta


def test_build_index_partition_purity_and_sizes(lake):
    t, d, meta = _build(lake)
    assert meta.num_partitions == 8 and meta.metric == "l2" and meta.dim == DIM
    assert sum(meta.partition_sizes) == 1200 == t.count_rows()
    assert all(s > 0 for s in meta.partition_sizes)
    seen, snap = _assert_pure(t)
    assert UNASSIGNED not in seen and not snap.unassigned
    assert [seen.get(p, 0) for p in range(8)] == meta.partition_sizes
    assert snap.partition_rows().tolist() == meta.partition_sizes
    # every row kept its id, vector and user columns
    ids, vec, tbl = table_vectors(t)
    assert ids.tolist() == list(range(1200))
    np.testing.assert_array_equal(vec, d["vector"])
    assert tbl.column("tag").to_pylist() == (d["id"] % 5).tolist()


def test_rows_are_in_their_nearest_centroid(lake):
    t, d, meta = _build(lake)
    snap = t.snapshot()
    cents = snap.model.centroids
    tbl = lance.dataset(t.data_uri, storage_options=t.lake.lance_options).to_table(
        columns=["vector", PARTITION_COLUMN])
    x = np.stack(tbl.column("vector").to_numpy(zero_copy_only=False))
    nearest = np.argmin(((x[:, None, :] - cents[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest, tbl.column(PARTITION_COLUMN).to_numpy())


def test_index_metadata_records_default_nprobe_and_version(lake):
    t, d, meta = _build(lake)
    assert 1 <= meta.default_nprobe <= meta.num_partitions
    curve = dict((p, r) for p, r in meta.recall_curve)
    assert curve[meta.default_nprobe] >= 0.97 or meta.default_nprobe == meta.num_partitions
    assert all(0.0 <= r <= 1.0 for r in curve.values())
    assert curve[meta.num_partitions] == 1.0
    info = t.index_info()
    assert info["index_id"] == meta.index_id and info["default_nprobe"] == meta.default_nprobe
    assert info["data_version"] == t.version and info["read_version"] == t.version - 1
    assert info["unassigned_rows"] == 0
    # the metadata survives a new connection
    t2 = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    assert t2.index_info()["default_nprobe"] == meta.default_nprobe
    # a search without nprobe uses the default
    t2.search(d["vector"][:3], k=5)
    assert t2.last_search_stats["nprobe"] == meta.default_nprobe


def test_appends_after_indexing_are_partitioned_and_found(lake):
    t, d, meta = _build(lake)
    v_indexed = t.version
    new = _clustered(300, start=10_000, seed=1)
    r = t.add(new)
    assert r.rows_added == 300 and t.count_rows() == 1500
    seen, snap = _assert_pure(t)
    assert UNASSIGNED not in seen, "appended rows were not assigned to partitions"
    assert sum(seen.values()) == 1500
    new_frags = [f for f in snap.fragments if f.fragment_id not in
                 {g.fragment_id for g in t.checkout(v_indexed).snapshot().fragments}]
    assert len(new_frags) > 1 and len({f.partition for f in new_frags}) == len(new_frags)
    # each appended vector is its own nearest neighbour at the default nprobe
    res = t.search(new["vector"][:50], k=1)
    assert res.column("id").to_pylist() == new["id"][:50].tolist()
    assert max(res.column("distance").to_pylist()) < 1e-3
    # and the indexed search with nprobe = nlist is exact over old and new rows
    allx = np.concatenate([d["vector"], new["vector"]])
    allid = np.concatenate([d["id"], new["id"]])
    q = np.random.default_rng(7).standard_normal((5, DIM)).astype(np.float32) * 10
    idx, dist = brute_force(allx, q, 10, "l2")
    ids, got = result_matrix(t.search(q, k=10, nprobe=8), 5, 10)
    assert np.array_equal(ids, allid[idx])
    np.testing.assert_allclose(got, dist, rtol=1e-4, atol=1e-3)


def test_time_travel_before_the_index_is_exact(lake):
    t = lake.create_table("t", dim=DIM)
    d = _clustered(800)
    v_old = t.add(d).version
    t.build_index(num_partitions=8)
    t.add(_clustered(200, start=5000, seed=3))
    old = t.checkout(v_old)
    assert old.count_rows() == 800 and t.count_rows() == 1000
    assert old.index_info() is None
    q = np.random.default_rng(11).standard_normal((4, DIM)).astype(np.float32) * 10
    idx, dist = brute_force(d["vector"], q, 10, "l2")
    ids, got = result_matrix(old.search(q, k=10, nprobe=1), 4, 10)
    assert np.array_equal(ids, d["id"][idx])  # nprobe is irrelevant: unindexed versions are scanned exactly
    np.testing.assert_allclose(got, dist, rtol=1e-4, atol=1e-3)
    assert old.last_search_stats["version"] == v_old
    with pytest.raises(lakevec.InvalidArgumentError, match="read-only"):
        old.build_index()
    with pytest.raises(lakevec.InvalidArgumentError):
        t.checkout(t.version + 5)
    with pytest.raises(lakevec.InvalidArgumentError):
        t.checkout(0)


def test_rebuild_replaces_the_index(lake):
    t, d, meta1 = _build(lake, nlist=4)
    t.add(_clustered(100, start=9000, seed=5))
    meta2 = t.build_index(num_partitions=6)
    assert meta2.index_id != meta1.index_id and t.index_info()["index_id"] == meta2.index_id
    seen, snap = _assert_pure(t)
    assert sorted(seen) == list(range(6)) and sum(seen.values()) == 1300
    assert sum(meta2.partition_sizes) == 1300
    # the version the first index built still reads through that index, exactly with all its partitions
    old = t.checkout(meta1.data_version)
    assert old.index_info()["index_id"] == meta1.index_id and old.count_rows() == 1200
    q = np.random.default_rng(5).standard_normal((3, DIM)).astype(np.float32) * 10
    idx, dist = brute_force(d["vector"], q, 10, "l2")
    ids, _ = result_matrix(old.search(q, k=10, nprobe=4), 3, 10)
    assert np.array_equal(ids, d["id"][idx])
    _assert_pure(old)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_build_for_other_metrics(lake, metric):
    t, d, meta = _build(lake, n=600, nlist=6, metric=metric)
    _assert_pure(t)
    q = d["vector"][:5] + 0.01
    idx, dist = brute_force(d["vector"], q, 10, metric)
    ids, got = result_matrix(t.search(q, k=10, nprobe=6), 5, 10)
    assert np.array_equal(ids, d["id"][idx])
    np.testing.assert_allclose(got, dist, rtol=1e-3, atol=1e-4)


def test_default_number_of_partitions(lake):
    t = lake.create_table("t", dim=DIM)
    t.add(_clustered(1600))
    meta = t.build_index()
    from lakevec.config import default_num_partitions
    assert meta.num_partitions == default_num_partitions(1600) > 1
    _assert_pure(t)


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "8", 10_000])
def test_bad_num_partitions(lake, n):
    t = lake.create_table("t", dim=DIM)
    t.add(_clustered(100))
    before = TableState(t)
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        t.build_index(num_partitions=n)
    assert "num_partitions" in str(ei.value)
    before.assert_unchanged()
    assert t.index_info() is None


def test_build_on_empty_table(lake):
    t = lake.create_table("t", dim=DIM)
    with pytest.raises(lakevec.InvalidArgumentError, match="empty"):
        t.build_index()


def test_failed_index_commit_leaves_the_table_as_it_was(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    d = _clustered(500)
    t.add(d)
    before = TableState(t)

    def boom(*a, **kw):
        raise RuntimeError("injected: commit failed")

    with monkeypatch.context() as m:
        m.setattr(lance.LanceDataset, "commit", staticmethod(boom))
        with pytest.raises(lakevec.LakevecError, match="injected"):
            t.build_index(num_partitions=4)
    before.assert_unchanged()
    assert t.index_info() is None
    res = t.search(d["vector"][:3], k=1)
    assert res.column("id").to_pylist() == [0, 1, 2]
    # and a later build works
    meta = t.build_index(num_partitions=4)
    assert t.index_info()["index_id"] == meta.index_id
    _assert_pure(t)


def test_string_id_table_indexes(lake):
    t = lake.create_table("s", dim=DIM, id_type="string")
    d = _clustered(400)
    t.add({"id": [f"k{i}" for i in d["id"]], "vector": d["vector"]})
    t.build_index(num_partitions=4)
    _assert_pure(t)
    res = t.search(d["vector"][[3, 77]], k=1, nprobe=4)
    assert res.column("id").to_pylist() == ["k3", "k77"]


# -- concurrent writers ------------------------------------------------------------------------------

def test_append_committed_during_the_build_survives_and_is_searched(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    d = _clustered(1000)
    t.add(d)
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    extra = _clustered(60, start=50_000, seed=8)
    import lakevec.index.build as build_mod
    real = build_mod.run_build_task

    def task_then_append(task):
        out = real(task)
        if not other.count_rows() > 1000:
            other.add(extra)  # another writer commits between the build's read and its commit
        return out

    monkeypatch.setattr(build_mod, "run_build_task", task_then_append)
    meta = t.build_index(num_partitions=8)
    assert t.count_rows() == 1060
    assert sum(meta.partition_sizes) == 1000
    info = t.index_info()
    assert info["index_id"] == meta.index_id and info["unassigned_rows"] == 60
    seen, snap = _assert_pure(t)
    assert seen[UNASSIGNED] == 60 and sum(seen.values()) == 1060
    res = t.search(extra["vector"][:10], k=1, nprobe=1)
    assert res.column("id").to_pylist() == extra["id"][:10].tolist()
    # the next build assigns everything
    t.build_index(num_partitions=8)
    seen, _ = _assert_pure(t)
    assert UNASSIGNED not in seen and sum(seen.values()) == 1060


def test_concurrent_builds_one_wins_the_other_leaves_no_trace(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    d = _clustered(600)
    t.add(d)
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    import lakevec.index.build as build_mod
    real = build_mod.run_build_task
    inner = {}

    def task_then_rival_build(task):
        out = real(task)
        if not inner:
            monkeypatch.setattr(build_mod, "run_build_task", real)
            inner["meta"] = other.build_index(num_partitions=4)
        return out

    monkeypatch.setattr(build_mod, "run_build_task", task_then_rival_build)
    with pytest.raises(lakevec.CommitConflictError) as ei:
        t.build_index(num_partitions=6)
    assert "retry" in str(ei.value)
    assert t.index_info()["index_id"] == inner["meta"].index_id
    seen, snap = _assert_pure(t)
    assert sorted(seen) == [0, 1, 2, 3] and sum(seen.values()) == 600
    from core_helpers import data_files
    referenced = {f.file.split("/")[-1] for f in snap.fragments}
    old_version = t.checkout(inner["meta"].read_version).snapshot()
    referenced |= {f.file.split("/")[-1] for f in old_version.fragments}
    assert data_files(t) <= referenced, "the losing build left data files behind"


def test_index_commit_that_succeeded_but_reported_an_error_keeps_its_files(lake, monkeypatch):
    """The store took the Rewrite commit, then the connection dropped: whatever build_index reports, the
    table must stay readable (its new fragments must not be deleted as if the build had failed)."""
    t = lake.create_table("t", dim=DIM)
    d = _clustered(400)
    t.add(d)
    real = lance.LanceDataset.commit

    def commit_then_fail(*a, **kw):
        real(*a, **kw)
        raise OSError("injected: connection reset by peer after the commit")

    with monkeypatch.context() as m:
        m.setattr(lance.LanceDataset, "commit", staticmethod(commit_then_fail))
        try:
            t.build_index(num_partitions=4)
        except lakevec.LakevecError:
            pass  # reporting the error is acceptable; breaking the table is not
    ids, vec, _ = table_vectors(t)  # reads every data file of the latest version
    assert ids.tolist() == list(range(400))
    res = t.search(d["vector"][:3], k=1, nprobe=4)
    assert res.column("id").to_pylist() == [0, 1, 2]


def test_the_same_seed_builds_the_same_index_and_another_seed_another(tmp_path):
    """Reproducible builds: same data + same seed -> same centroids, partitions and calibrated nprobe (also
    through the CLI's --seed)."""
    import lakevec
    from lakevec.cli.main import main as cli
    d = _clustered(2000)
    metas = []
    for k, seed in enumerate((7, 7, 8)):
        lake = lakevec.connect(str(tmp_path / f"l{k}"))
        t = lake.create_table("t", dim=DIM)
        t.add(d)
        assert cli(["--quiet", "index", "t", "--lake", lake.uri, "--num-partitions", "8", "--seed", str(seed)]) == 0
        m = t.snapshot().index
        metas.append((m.partition_sizes, m.default_nprobe, t.files.centroids(m.index_id)))
    assert metas[0][0] == metas[1][0] and metas[0][1] == metas[1][1]
    np.testing.assert_array_equal(metas[0][2], metas[1][2])
    assert not np.array_equal(metas[0][2], metas[2][2])


def test_a_build_waits_for_a_compaction_that_started_first(lake):
    """A compaction running when the build starts (its lease is live) finishes first; the build then reads
    the version it made. Here the "compaction" commits an append and ends after 1 s: the build's read
    version includes it, so its rows are assigned by the build, not left unassigned."""
    import threading

    from lakevec.commit.claims import JobLease

    t = lake.create_table("t", dim=DIM)
    d = _clustered(400)
    t.add(d)
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    lease = JobLease(t.store, t.loc, "a-running-compaction", "compact").__enter__()
    done = {}

    def finish():
        more = _clustered(50, seed=7)
        more["id"] = np.arange(10_000, 10_050)
        done["version"] = other.add(more).version
        lease.release()

    timer = threading.Timer(1.0, finish)
    timer.start()
    meta = t.build_index(num_partitions=4)
    timer.join()
    assert meta.read_version >= done["version"]
    seen, snap = _assert_pure(t)
    assert not snap.unassigned and sum(seen.values()) == 450
