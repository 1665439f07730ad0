"""The lakevec state of a version: rebuilt from O(1) objects, atomic with the data, never guessed.

Local disk and the embedded S3 server (``storage`` fixture). Counts come from the lake's own request
counters (every lakevec object read is a counted GET).
"""
from __future__ import annotations

import numpy as np
import pytest
from core_helpers import make_rows

import lakevec
from lakevec.config import META_DIR
from lakevec.state import CHECKPOINT_EVERY

DIM = 8


def _fresh(storage, name="t"):
    """The table through a new Lake: no in-process cache of records, checkpoints or states."""
    return lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table(name)


def test_cold_open_reads_a_bounded_number_of_objects(s3_server):
    """Counted by the server (a counting proxy in front of it): the distinct objects a new client reads to
    open the latest version stay bounded while the history grows."""
    import uuid

    from lakevec.bench.s3proxy import CountingProxy
    uri = s3_server.uri("lakevec", f"cold-{uuid.uuid4().hex[:8]}")
    t = lakevec.connect(uri, storage_options=dict(s3_server.storage_options)).create_table("t", dim=DIM)
    t.add(make_rows(400, DIM, tag=False))
    t.build_index(num_partitions=4)
    objects = []
    with CountingProxy(s3_server.endpoint, keep_log=True) as proxy:
        via = dict(s3_server.storage_options, aws_endpoint=proxy.endpoint)
        for i in range(3 * CHECKPOINT_EVERY + 3):  # daily ETL: many small commits
            t.add(make_rows(5, DIM, start=1000 + 5 * i, seed=i, tag=False))
            if i in (0, CHECKPOINT_EVERY, 3 * CHECKPOINT_EVERY + 2):
                proxy.reset()
                snap = lakevec.connect(uri, storage_options=via).open_table("t").snapshot()
                objects.append(len({e[2] for e in proxy.log() if e[0] in ("GET", "HEAD")}))
                assert snap.index is not None and len(snap.unassigned) == 0  # every appended file is assigned
    # the lake marker, table.json, Lance's manifest, the version's record, <= 7 chained records, a checkpoint,
    # the centroids: bounded, however long the history
    assert max(objects) <= CHECKPOINT_EVERY + 6, objects
    names = t.store.list_names(t.loc.join(META_DIR, "checkpoints"))
    assert len(names) >= 3  # writers wrote checkpoints as the chains filled up


def test_every_kept_version_reads_its_own_state(storage, lake):
    """Time travel across checkpoints: version v sees exactly the rows, keys and partition map it had."""
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(200, DIM, tag=False))
    t.build_index(num_partitions=4)
    seen = {}
    for i in range(CHECKPOINT_EVERY + 4):
        r = t.add(make_rows(3, DIM, start=500 + 3 * i, seed=i, tag=False), idempotency_key=f"k{i}")
        seen[r.version] = (t.count_rows(), {f"k{j}" for j in range(i + 1)})
    fresh = _fresh(storage)
    for v, (rows, keys) in seen.items():
        old = fresh.checkout(v)
        snap = old.snapshot()
        assert snap.num_rows == rows and set(snap.state.keys) == keys
        assert sum(len(f) for f in snap.by_partition.values()) == len(snap.fragments)  # all assigned
        assert len(snap.state.runs) == 2 + (v - min(seen))  # the first ingestion's run + one per append


def test_a_missing_record_of_a_committed_version_is_an_error_not_absent(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(100, DIM, tag=False))
    t.build_index(num_partitions=2)
    txn = t.snapshot().state.txn
    t.store.delete(t.loc.join(META_DIR, "commits", f"{txn}.json"))
    cold = _fresh(storage)
    with pytest.raises(lakevec.LakevecError, match="commit record"):
        cold.snapshot()
    with pytest.raises(lakevec.LakevecError, match="commit record"):  # a writer must not guess either
        cold.add(make_rows(5, DIM, start=900, tag=False))


def test_the_index_in_force_is_the_one_its_commit_named(storage, lake):
    """A build that races appends puts its own index in force, however many rows the appends brought."""
    import lakevec.commit.protocol as protocol
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(300, DIM, tag=False))
    m1 = t.build_index(num_partitions=3)
    other = _fresh(storage)

    def big_append(tt, change, parent):  # right before the index commit: a large append lands
        if change.op == "index":
            protocol._before_lance_commit = None
            other.add(make_rows(2000, DIM, start=10_000, seed=5, tag=False))

    protocol._before_lance_commit = big_append
    try:
        m2 = t.build_index(num_partitions=4)
    finally:
        protocol._before_lance_commit = None
    snap = _fresh(storage).snapshot()
    assert snap.index.index_id == m2.index_id != m1.index_id
    # the racing append's fragments were assigned to the old index: unassigned now, scanned by every query
    assert sum(f.num_rows for f in snap.unassigned) == 2000 and snap.num_rows == 2300
    x = make_rows(2000, DIM, start=10_000, seed=5, tag=False)["vector"][:3]
    assert t.search(x, k=1).column("id").to_pylist() == [10_000, 10_001, 10_002]
    r = t.compact()  # re-clusters the unassigned rows into the index in force
    snap = t.snapshot()
    assert r["committed"] and not snap.unassigned and snap.num_rows == 2300
    assert t.search(x, k=1).column("id").to_pylist() == [10_000, 10_001, 10_002]


def test_a_commit_by_another_lance_writer_keeps_the_state(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(100, DIM, tag=False), idempotency_key="k")
    t.build_index(num_partitions=2)
    t._open_latest().delete("id < 10")  # a plain Lance commit (no lakevec record)
    snap = _fresh(storage).snapshot()
    assert snap.num_rows == 90 and snap.state.keys == {"k": 2} and snap.index is not None
    assert not snap.unassigned  # the rewritten fragments keep their data files, hence their partitions
    assert _fresh(storage).add(make_rows(5, DIM, start=500, tag=False)).rows_added == 5


def test_append_reads_only_the_id_runs_its_ids_can_overlap(storage, lake):
    t = lake.create_table("t", dim=DIM)
    for k in range(4):
        t.add(make_rows(1000, DIM, start=k * 1000, seed=k, tag=False))
    fresh = _fresh(storage)
    r = fresh.add(make_rows(100, DIM, start=10_000, seed=9, tag=False))  # new, increasing ids
    assert r.ids_read_bytes == 0
    r = fresh.add(make_rows(100, DIM, start=3950, seed=9, tag=False), on_bad_rows="skip")  # overlaps one run
    assert r.rows_rejected == 50 and 0 < r.ids_read_bytes <= 8 * 1000 + 200  # that run only (.npy header)
    ids = np.sort(fresh.to_arrow(columns=["id"]).column("id").to_numpy())
    assert len(ids) == len(np.unique(ids)) == 4000 + 100 + 50


def test_threads_sharing_a_table_read_states_while_it_moves(storage, lake):
    """One Table shared by reader threads while another writer commits: every thread rebuilds the states of
    new versions (reading Lance transactions) on the dataset they all share, and none of them fails.
    (pylance's read_transaction borrows its dataset mutably: on the shared handle, concurrent readers
    failed with "Already mutably borrowed".)"""
    import threading

    from lakevec.state import txn_of

    t = lake.create_table("t", dim=DIM)
    for i in range(4):
        t.add(make_rows(20, DIM, start=20 * i, seed=i, tag=False))
    shared = _fresh(storage)
    ds = shared._open_latest()
    errors: list = []

    def read(r: int) -> None:
        for j in range(15):
            try:
                assert txn_of(ds, 2 + (r + j) % (ds.version - 1))  # version 1: create_table
                assert ds.version >= 4
                shared.snapshot()
            except Exception as e:  # noqa: BLE001 - every failure is collected and shown
                errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=read, args=(r,)) for r in range(8)]
    [x.start() for x in threads]
    for i in range(3):
        t.add(make_rows(5, DIM, start=1000 + 5 * i, seed=100 + i, tag=False))
    [x.join() for x in threads]
    assert errors == []
    assert shared.snapshot().num_rows == 95
