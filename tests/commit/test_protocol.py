"""The commit protocol under concurrency: nothing lost, nothing doubled (local disk and the S3 server).

Concurrent writers are separate Lake objects (separate caches, as separate processes have) on threads;
the process-level tests are in test_processes.py. ``protocol._before_lance_commit`` injects a commit of
another writer exactly between a writer's re-validation and its Lance commit: the window in which Lance
re-bases an append (a "gap"), which must then be compensated.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from core_helpers import data_files, make_rows

import lakevec
import lakevec.commit.protocol as protocol

DIM = 8


def _open(storage, name="t"):
    return lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table(name)


def _ids(t) -> np.ndarray:
    return np.sort(t.to_arrow(columns=["id"]).column("id").to_numpy())


@pytest.fixture
def hook():
    """Set ``protocol._before_lance_commit`` for one test."""
    def set_(fn):
        protocol._before_lance_commit = fn
    yield set_
    protocol._before_lance_commit = None


def test_concurrent_writers_keep_every_row_once(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM, tag=False))
    n_writers, per = 6, 4
    errors = []

    def writer(w):
        try:
            tt = _open(storage)
            for i in range(per):
                start = 1000 * (w + 1) + 10 * i
                tt.add(make_rows(10, DIM, start=start, seed=w * 100 + i, tag=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert not errors, errors
    ids = _ids(_open(storage))
    want = np.sort(np.concatenate([np.arange(10)] + [np.arange(1000 * (w + 1) + 10 * i, 1000 * (w + 1) + 10 * i + 10)
                                                        for w in range(n_writers) for i in range(per)]))
    assert np.array_equal(ids, want)


def test_concurrent_writers_of_the_same_ids_keep_each_id_once(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM, tag=False))
    outcomes = []
    barrier = threading.Barrier(4)

    def writer(w):
        tt = _open(storage)
        barrier.wait()
        try:
            r = tt.add(make_rows(20, DIM, start=100, seed=w, tag=False))
            outcomes.append(("ok", r.rows_added))
        except lakevec.ValidationError as e:
            outcomes.append(("dup", str(e)))
        except Exception as e:
            outcomes.append(("error", repr(e)))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    ids = _ids(_open(storage))
    assert np.array_equal(ids, np.r_[np.arange(10), np.arange(100, 120)])  # each id exactly once
    oks = [o for o in outcomes if o[0] == "ok"]
    assert len(oks) == 1 and oks[0][1] == 20, outcomes  # one writer won; the others were refused, clearly
    assert all("duplicate id" in m or "already in the table" in m for k, m in outcomes if k == "dup")


def test_same_key_from_concurrent_runs_commits_once(storage, lake):
    lake.create_table("t", dim=DIM)
    results = []
    barrier = threading.Barrier(3)

    def run(w):
        tt = _open(storage)
        barrier.wait()
        results.append(tt.add(make_rows(30, DIM, start=w * 100, seed=w, tag=False), idempotency_key="nightly"))

    threads = [threading.Thread(target=run, args=(w,)) for w in range(3)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert sorted(r.skipped for r in results) == [False, True, True]
    assert _open(storage).count_rows() == 30  # one run's rows, once


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_a_gap_commit_with_the_same_ids_is_compensated(storage, lake, hook, mode):
    """Lance re-bases an append over a commit that landed after its last check: the duplicates are deleted at
    once (the earlier commit wins); in raise mode the whole ingestion is taken back and reported as refused."""
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM, tag=False))
    t.build_index(num_partitions=2)
    other = _open(storage)
    gaps = []

    def rival(tt, change, parent):
        if change.op == "append":
            protocol._before_lance_commit = None
            other.add(make_rows(10, DIM, start=105, seed=7, tag=False))  # ids 105..114 land first
            gaps.append(parent)

    hook(rival)
    mine = make_rows(10, DIM, start=100, seed=3, tag=False)  # ids 100..109: 105..109 collide
    if mode == "raise":
        with pytest.raises(lakevec.ValidationError, match="duplicate id"):
            t.add(mine)
        want = np.r_[np.arange(10), np.arange(105, 115)]
    else:
        r = t.add(mine, on_bad_rows="skip")
        assert (r.rows_added, r.rows_rejected) == (5, 5)
        want = np.r_[np.arange(10), np.arange(100, 115)]
    assert gaps, "the rival commit was not injected"
    fresh = _open(storage)
    assert np.array_equal(_ids(fresh), want)  # each id once
    rival_vec = make_rows(10, DIM, start=105, seed=7, tag=False)["vector"][:5]
    hits = fresh.search(rival_vec, k=1)  # 105..109 keep the rival's vectors
    assert hits.column("id").to_pylist() == list(range(105, 110))
    assert np.allclose(hits.column("distance").to_numpy(), 0, atol=1e-5)
    assert fresh.snapshot().state.index is not None and not fresh.snapshot().unassigned


def test_a_gap_commit_of_the_same_key_is_removed_whole(storage, lake, hook):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM, tag=False))
    other = _open(storage)

    def rival(tt, change, parent):
        if change.op == "append" and change.keys:
            protocol._before_lance_commit = None
            # the same nightly job's key, committed by a second run whose claim wait was lost (paused run)
            import lakevec.commit.claims as claims
            real = claims.acquire
            claims_acquire = lambda *a, **k: ("claimed", claims.Claim("x", {}))  # noqa: E731
            import lakevec.commit.job as job
            job.acquire = claims_acquire
            try:
                other.add(make_rows(5, DIM, start=500, seed=1, tag=False), idempotency_key="run-7")
            finally:
                job.acquire = real

    hook(rival)
    r = t.add(make_rows(5, DIM, start=500, seed=1, tag=False), idempotency_key="run-7")
    assert r.skipped  # its commit was taken back: the key was committed first by the other run
    fresh = _open(storage)
    assert np.array_equal(_ids(fresh), np.r_[np.arange(10), np.arange(500, 505)])
    assert fresh.snapshot().state.keys["run-7"] < fresh.version  # the first commit of the key is the one kept


def test_files_of_an_append_that_lost_to_a_duplicate_are_removed(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM, tag=False))
    before = data_files(t)
    other = _open(storage)
    other.add(make_rows(10, DIM, start=50, tag=False))
    added = data_files(t) - before
    with pytest.raises(lakevec.ValidationError):
        t.add(make_rows(10, DIM, start=55, tag=False))  # checked against the version it read: refused
    assert data_files(t) - before == added  # no leftovers of the refused append


def test_commit_outcome_unknown_after_a_transport_error_keeps_the_files(storage, lake, monkeypatch):
    import lance
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM, tag=False))
    before = data_files(t)

    def lost(*a, **kw):
        raise OSError("injected: connection reset by peer while sending the manifest")

    monkeypatch.setattr(lance.LanceDataset, "commit", staticmethod(lost))
    with pytest.raises(lakevec.StorageError) as ei:
        t.add(make_rows(10, DIM, start=100, tag=False), idempotency_key="k")
    monkeypatch.undo()
    assert any("unknown" in n for n in getattr(ei.value, "__notes__", [])) or "unknown" in str(ei.value)
    assert data_files(t) - before  # kept: a late write of the manifest cannot be ruled out
    assert t.count_rows() == 10
    r = t.add(make_rows(10, DIM, start=100, tag=False), idempotency_key="k")  # a re-run is safe
    assert r.rows_added == 10 and t.count_rows() == 20
    out = t.vacuum(older_than=0, force=True)  # and vacuum removes the unknown outcome's orphans
    assert out["data_files_removed"] >= 1
    assert t.count_rows() == 20
