"""build_index(engine="ray"|"spark"): several parallel tasks, the same index as the local build, exactly once."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import sift10k

from lakevec.engines.faults import FailOnce

TASK_BYTES = 1_500_000  # SIFT10K's 4 fragments of 1.3 MB: one task each


def _load(lake, name, base):
    t = lake.create_table(name, dim=128)
    for k in range(4):  # four fragments, so that the build can be split
        t.add({"id": np.arange(k * 2500, (k + 1) * 2500), "vector": base[k * 2500:(k + 1) * 2500]})
    return t


def _recall(t, queries, gt, nprobe=None) -> float:
    res = t.search(queries, k=10, nprobe=nprobe)
    ids = np.asarray(res.column("id").to_pylist()).reshape(len(queries), 10)
    return float(np.mean([len(set(ids[i]) & set(gt[i, :10])) / 10 for i in range(len(queries))]))


def _partition_of_ids(t) -> dict:
    tbl = t.snapshot().ds.to_table(columns=["id", "_partition"])
    return dict(zip(tbl.column("id").to_pylist(), tbl.column("_partition").to_pylist()))


def test_distributed_build_equals_local_build(dist_engine, storage, lake, ref_lake, small_tasks):
    base, queries, gt = sift10k()
    ref = _load(ref_lake, "t", base)
    m_ref = ref.build_index(num_partitions=32)
    t = _load(lake, "t", base)
    with small_tasks(dist_engine, TASK_BYTES):
        m = t.build_index(num_partitions=32, engine=dist_engine)
    assert m.stats["engine"] == dist_engine and m.stats["tasks"] >= 4  # really split into parallel tasks
    assert m.stats["tasks"] > m_ref.stats["tasks"]
    assert t.count_rows() == 10000
    # the same index: same centroids, every row in the same partition, same calibration
    _, c_ref = ref.files.read_index(m_ref.index_id)
    _, c = t.files.read_index(m.index_id)
    np.testing.assert_array_equal(c, c_ref)
    assert _partition_of_ids(t) == _partition_of_ids(ref)
    assert m.partition_sizes == m_ref.partition_sizes
    assert m.default_nprobe == m_ref.default_nprobe
    np.testing.assert_allclose([r for _, r in m.recall_curve], [r for _, r in m_ref.recall_curve], atol=0.01)
    # and the same search quality
    for nprobe in (None, 4):
        r_local, r_dist = _recall(ref, queries, gt, nprobe), _recall(t, queries, gt, nprobe)
        assert abs(r_dist - r_local) <= 0.01, (nprobe, r_dist, r_local)
    assert _recall(t, queries, gt) >= 0.9
    # partition purity of the distributed rewrite
    snap = t.snapshot()
    assert not snap.unassigned
    for f in snap.fragments:
        parts = snap.ds.get_fragment(f.fragment_id).to_table(columns=["_partition"]).column("_partition")
        assert set(parts.to_pylist()) == {f.partition}


def test_retried_build_tasks_do_not_duplicate_rows(dist_engine, local_lake, tmp_path, small_tasks):
    base, queries, gt = sift10k()
    t = local_lake.create_table("t", dim=128)
    t.add({"id": np.arange(10000), "vector": base})  # one 5 MB fragment: the build cuts it into row ranges
    assert len(t.snapshot().fragments) == 1
    fo = FailOnce(str(tmp_path / "markers"), how="raise", task_ids=(0, 2))
    with small_tasks(dist_engine, TASK_BYTES, task_wrapper=fo):
        m = t.build_index(num_partitions=16, engine=dist_engine)
    assert m.stats["tasks"] == 4  # 5.1 MB / 1.5 MB
    assert sorted(fo.attempts()) == ["0", "2"]
    ids = t.to_arrow(columns=["id"]).column("id").to_numpy()
    assert len(ids) == len(np.unique(ids)) == 10000
    assert sum(m.partition_sizes) == 10000
    assert _recall(t, queries, gt) >= 0.9


@pytest.mark.parametrize("engine_name", ["ray", "spark"])
def test_build_task_size_follows_the_cluster(engine_name):
    from lakevec.engines import get_engine, task_bytes_for
    from lakevec.index.build import BUILD_TASK_BYTES
    eng = get_engine(engine_name, num_cpus=4) if engine_name == "ray" else get_engine(engine_name, master="local[4]")
    par = eng.parallelism()  # of the running cluster if there is one (the session's: 2), else 4
    assert par in (2, 4)
    # a 1 GB table is cut into one task per core; a tiny table stays one task; the local engine keeps one big task
    assert task_bytes_for(eng, 1 << 30, BUILD_TASK_BYTES) == int((1 << 30) // par * 1.1)  # 10% slack
    assert task_bytes_for(eng, 1 << 20, BUILD_TASK_BYTES) == 16 << 20
    assert task_bytes_for("local", 1 << 30, BUILD_TASK_BYTES) == BUILD_TASK_BYTES
    assert task_bytes_for(get_engine(engine_name, task_bytes=12345), 1 << 30, BUILD_TASK_BYTES) == 12345
