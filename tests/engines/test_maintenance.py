"""compact (merge small fragments within a partition, one commit) and vacuum (old versions, orphans)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import sift10k
from core_helpers import data_files

import lakevec


def _indexed_with_appends(lake, base):
    t = lake.create_table("t", dim=128)
    t.add({"id": np.arange(5000), "vector": base[:5000]})
    t.build_index(num_partitions=12)
    for k in range(5):  # appends after the index: small per-partition fragments
        lo = 5000 + k * 1000
        t.add({"id": np.arange(lo, lo + 1000), "vector": base[lo:lo + 1000]})
    return t


def _purity(t):
    snap = t.snapshot()
    for f in snap.fragments:
        parts = snap.ds.get_fragment(f.fragment_id).to_table(columns=["_partition"]).column("_partition")
        assert set(parts.to_pylist()) == {f.partition}, f
    return snap


def test_compact_merges_within_partitions_only(engine, storage, lake):
    base, queries, _ = sift10k()
    t = _indexed_with_appends(lake, base)
    before = t.snapshot()
    assert len(before.fragments) > 12 * 3 and not before.unassigned
    hits_before = t.search(queries, k=10, nprobe=12)
    v = t.version
    r = t.compact(engine=engine)
    assert r["committed"] and r["version"] == v + 1 == t.version  # one commit
    assert r["fragments_before"] == len(before.fragments) and r["fragments_after"] == 12
    assert r["rows_rewritten"] == 10000 and t.count_rows() == 10000
    snap = _purity(t)  # every merged fragment still holds one partition
    assert len(snap.by_partition) == 12 and all(len(v) == 1 for v in snap.by_partition.values())
    assert snap.partition_rows().tolist() == before.partition_rows().tolist()
    assert not snap.unassigned  # the new files have their sidecar entries
    hits_after = t.search(queries, k=10, nprobe=12)
    assert hits_after.column("id").to_pylist() == hits_before.column("id").to_pylist()
    # nothing left to merge: no commit
    again = t.compact(engine=engine)
    assert not again["committed"] and t.version == v + 1
    # the old version is still readable until vacuum
    assert t.checkout(v).count_rows() == 10000


def test_compact_unindexed_table_and_target_rows(local_lake):
    t = local_lake.create_table("t", dim=4)
    for k in range(6):
        t.add({"id": np.arange(k * 100, (k + 1) * 100), "vector": np.full((100, 4), k, np.float32)})
    r = t.compact(target_rows=250)  # 6 x 100 rows -> groups of at most 250 rows: 200 + 200 + 200
    assert r["committed"] and r["fragments_before"] == 6 and r["fragments_after"] == 3
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(600))
    with pytest.raises(lakevec.InvalidArgumentError):
        t.compact(target_rows=0)


def test_compact_yields_to_a_running_index_build(local_lake):
    """While an index build (or optimize) holds a live lease, compaction commits nothing and says why; an
    ingestion's lease does not stop it, nor does an expired build lease."""
    from lakevec.commit.claims import JobLease

    t = local_lake.create_table("t", dim=4)
    for k in range(4):
        t.add({"id": np.arange(k * 10, (k + 1) * 10), "vector": np.full((10, 4), k, np.float32)})
    v = t.version
    for kind in ("index", "optimize"):
        with JobLease(t.store, t.loc, f"job-{kind}", kind):
            r = t.compact()
        assert not r["committed"] and "yields" in r["skipped"] and kind in r["skipped"].replace("n index", " index")
        assert t.version == v
    with JobLease(t.store, t.loc, "job-ingest", "ingest"), JobLease(t.store, t.loc, "job-old", "index",
                                                                      lease_seconds=-1):
        r = t.compact()
    assert r["committed"] and r["fragments_after"] == 1 and t.version == v + 1 and t.count_rows() == 40


def test_compact_drops_deleted_rows(local_lake):
    t = local_lake.create_table("t", dim=4)
    t.add({"id": np.arange(100), "vector": np.ones((100, 4), np.float32)})
    t._open_latest().delete("id < 10")  # a Lance deletion file (e.g. written by another tool)
    r = t.compact()
    assert r["committed"] and t.count_rows() == 90
    assert t.snapshot().ds.get_fragments()[0].metadata.deletion_file is None


def test_vacuum_keeps_current_version_and_recent_files(storage, lake):
    t = lake.create_table("t", dim=4)
    for k in range(3):
        t.add({"id": np.arange(k * 10, (k + 1) * 10), "vector": np.ones((10, 4), np.float32)})
    v = t.version
    orphan = t.data_uri + "/data/orphan-from-a-dead-job.lance"
    t.store.write_bytes(orphan, b"x" * 100)
    # a retention longer than the files' age removes nothing
    with pytest.raises(lakevec.InvalidArgumentError, match="force"):  # below the 7-day minimum retention
        t.vacuum(older_than=3600)
    r = t.vacuum(older_than=3600, force=True)
    assert r["versions_removed"] == 0 and r["data_files_removed"] == 0 and t.store.exists(orphan)
    dry = t.vacuum(older_than=0, dry_run=True, force=True)
    assert dry["data_files_removed"] == 1 and t.store.exists(orphan)
    r = t.vacuum(older_than=0, force=True)
    assert r["versions_removed"] == v - 1 and not t.store.exists(orphan)
    assert t.version == v and t.count_rows() == 30  # the current version stays
    assert [x["version"] for x in t.versions()] == [v]
    with pytest.raises(lakevec.InvalidArgumentError):
        t.checkout(1)
    with pytest.raises(lakevec.InvalidArgumentError):
        t.vacuum(older_than=-1, force=True)
    with pytest.raises(lakevec.InvalidArgumentError):
        t.vacuum(older_than="1 day")


def test_vacuum_removes_unused_index_objects_and_sidecars(local_lake):
    base, _, _ = sift10k()
    t = local_lake.create_table("t", dim=128)
    t.add({"id": np.arange(3000), "vector": base[:3000]})
    m1 = t.build_index(num_partitions=8)
    m2 = t.build_index(num_partitions=6)  # rewrites everything: the first index is no longer in force
    assert t.index_info()["index_id"] == m2.index_id
    r = t.vacuum(older_than=0, force=True)
    assert r["indexes_removed"] == 1  # (the commit records stay: the kept version's chain names them)
    names = t.store.list_names(t.loc.join("index"))
    assert not any(n.startswith(m1.index_id) for n in names)
    assert any(n.startswith(m2.index_id) for n in names)
    assert t.index_info()["index_id"] == m2.index_id and t.count_rows() == 3000
    assert t.search(base[:5], k=1).column("id").to_pylist() == [0, 1, 2, 3, 4]


def test_vacuum_leaves_a_running_jobs_files_alone(local_lake):
    t = local_lake.create_table("t", dim=4)
    t.add({"id": np.arange(10), "vector": np.ones((10, 4), np.float32)})
    inflight = t.data_uri + "/data/written-by-a-running-task.lance"
    t.store.write_bytes(inflight, b"y" * 10)
    time.sleep(1.1)
    t.store.write_bytes(t.data_uri + "/data/just-written.lance", b"z")
    r = t.vacuum(older_than=1.0, force=True)  # only files older than one second go
    names = data_files(t)
    assert "written-by-a-running-task.lance" not in names and "just-written.lance" in names
    assert r["data_files_removed"] == 1
    assert t.count_rows() == 10
