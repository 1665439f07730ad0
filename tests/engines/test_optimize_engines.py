"""optimize(engine="ray"|"spark"): the same measurements, plan, moves and index as the local run, in one commit."""
from __future__ import annotations

import numpy as np

DIM = 16


def _drifted(lake):
    rng = np.random.default_rng(0)
    centers = (rng.standard_normal((8, DIM)) * 10).astype(np.float32)
    t = lake.create_table("t", dim=DIM)
    x = centers[rng.integers(0, 8, 1200)] + rng.standard_normal((1200, DIM))
    t.add({"id": np.arange(1200), "vector": x.astype(np.float32)})
    t.build_index(num_partitions=8)
    for k in range(3):  # three appends: several fragments per partition, several tasks
        along = rng.uniform(0.05, 0.56, 1000)[:, None]
        y = centers[0] + along * (centers[1] - centers[0]) + rng.standard_normal((1000, DIM))
        t.add({"id": np.arange(10_000 + 1000 * k, 11_000 + 1000 * k), "vector": y.astype(np.float32)})
    return t


def _layout(t) -> dict:
    tbl = t.snapshot().ds.to_table(columns=["id", "_partition"])
    return dict(zip(tbl.column("id").to_pylist(), tbl.column("_partition").to_pylist()))


def test_distributed_optimize_equals_local(dist_engine, local_lake, ref_lake, small_tasks):
    ref = _drifted(ref_lake)
    r_ref = ref.optimize()
    t = _drifted(local_lake)
    v = t.version
    with small_tasks(dist_engine, 40_000):  # a few fragments per task: really parallel tasks
        r = t.optimize(engine=dist_engine)
    assert r["committed"] and t.version == v + 1
    for k in ("rows_moved", "rows_written", "fragments_rewritten", "fragments_with_deletions", "fragments_read"):
        assert r["rewrite"][k] == r_ref["rewrite"][k], k
    assert r["plan"] == r_ref["plan"]
    assert r["before"] == r_ref["before"] and r["after"] == r_ref["after"]
    _, c_ref = ref.files.read_index(r_ref["index_after"])
    _, c = t.files.read_index(r["index_after"])
    np.testing.assert_array_equal(c, c_ref)
    assert _layout(t) == _layout(ref)  # every row in the same partition
    snap = t.snapshot()
    assert not snap.unassigned and snap.index.partition_sizes == ref.snapshot().index.partition_sizes
    for f in snap.fragments:
        parts = snap.ds.get_fragment(f.fragment_id).to_table(columns=["_partition"]).column("_partition")
        assert set(parts.to_pylist()) == {f.partition}
