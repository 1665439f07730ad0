"""Idempotent ingestion (per source files / explicit key) and failures that leave no trace (local and S3)."""
from __future__ import annotations

import lance
import numpy as np
import pytest
from core_helpers import (TableState, arrow_rows, data_files, hermetic_aws, make_rows, source_root,  # noqa: F401
                          write_parquet)

import lakevec
from lakevec.config import META_DIR

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 8


def _sources(storage, tmp_path, n=2, rows=15, start=0):
    root = source_root(storage, tmp_path)
    return root, [write_parquet(storage, root, f"part-{i}.parquet", arrow_rows(rows, DIM, start + i * rows, seed=i))
                  for i in range(n)]


def test_same_parquet_sources_twice_commit_once(storage, lake, tmp_path):
    root, paths = _sources(storage, tmp_path)
    t = lake.create_table("t", dim=DIM)
    r1 = t.add(paths)
    assert r1.rows_added == 30 and not r1.skipped and r1.key
    v1 = t.version
    r2 = t.add(paths)
    assert r2.skipped and r2.rows_added == 0 and r2.key == r1.key
    assert r2.version == v1 == t.version and t.count_rows() == 30
    # the same files named differently (reversed list, glob, folder) are the same sources
    for again in (list(reversed(paths)), f"{root}/part-*.parquet", root):
        r = t.add(again)
        assert r.skipped and r.key == r1.key, again
    assert t.version == v1 and t.count_rows() == 30
    # the version's state names the key and the source files with the version that committed them
    st = t.snapshot().state
    assert st.keys[r1.key] == v1 and len(st.sources) == 2 and set(st.sources.values()) == {v1}


def test_new_or_changed_sources_are_ingested(storage, lake, tmp_path):
    root, paths = _sources(storage, tmp_path, n=1)
    t = lake.create_table("t", dim=DIM)
    t.add(paths)
    # one more file: a different set of sources, ingested (its rows only are new)
    extra = write_parquet(storage, root, "part-9.parquet", arrow_rows(5, DIM, 100, seed=3))
    r = t.add(extra)
    assert r.rows_added == 5 and not r.skipped
    # a file rewritten at the same path with other content is a new source
    write_parquet(storage, root, "part-9.parquet", arrow_rows(7, DIM, 200, seed=4))
    r = t.add(extra)
    assert r.rows_added == 7 and not r.skipped
    assert t.count_rows() == 15 + 5 + 7


def test_explicit_idempotency_key(lake):
    t = lake.create_table("t", dim=DIM)
    r1 = t.add(make_rows(10, DIM), idempotency_key="batch-2024-01-01")
    v1 = t.version
    # the key says it is done: even other rows are not ingested again under it
    r2 = t.add(make_rows(10, DIM, start=50), idempotency_key="batch-2024-01-01")
    assert r2.skipped and r2.version == v1 == t.version and t.count_rows() == 10
    assert r1.key == r2.key == "batch-2024-01-01"
    r3 = t.add(make_rows(10, DIM, start=50), idempotency_key="batch-2024-01-02")
    assert not r3.skipped and t.count_rows() == 20
    # no key, in-memory data: every call ingests (duplicate ids are then caught by validation)
    with pytest.raises(lakevec.ValidationError, match="already in the table"):
        t.add(make_rows(10, DIM))


def test_key_of_an_ingestion_that_added_nothing_is_recorded(lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(3, DIM))
    bad = make_rows(3, DIM, start=10)
    bad["vector"][:] = np.nan
    r = t.add(bad, on_bad_rows="skip", idempotency_key="all-bad")
    assert r.rows_added == 0 and r.rows_rejected == 3
    assert t.add(bad, on_bad_rows="skip", idempotency_key="all-bad").skipped


def test_growing_folder_ingests_only_new_files(storage, lake, tmp_path):
    root, paths = _sources(storage, tmp_path, n=2)
    t = lake.create_table("t", dim=DIM)
    r1 = t.add(root)
    assert r1.rows_added == 30 and r1.files_skipped == 0
    # the next night: one more file in the folder; the old ones are not ingested again
    write_parquet(storage, root, "part-2.parquet", arrow_rows(15, DIM, 30, seed=2))
    r2 = t.add(root)
    assert (r2.rows_added, r2.files_skipped, r2.skipped) == (15, 2, False)
    assert t.count_rows() == 45 and t.version == r1.version + 1
    r3 = t.add(root)
    assert r3.skipped and r3.files_skipped == 3 and t.version == r2.version
    # a file already committed is left out of an explicit-key batch too
    write_parquet(storage, root, "part-3.parquet", arrow_rows(5, DIM, 45, seed=3))
    r4 = t.add(root, idempotency_key="run-4")
    assert (r4.rows_added, r4.files_skipped, r4.key) == (5, 3, "run-4")
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(50))


def test_claim_of_a_dead_run_is_taken_over(storage, lake, tmp_path):
    """A run that claimed the key and died (no heartbeat: its claim expired) does not block the key."""
    import json
    import time

    from lakevec.commit.claims import CLAIMS_DIR, claim_name
    root, paths = _sources(storage, tmp_path)
    t = lake.create_table("t", dim=DIM)
    from lakevec.ingest.convert import resolve_files, sources_key
    key = sources_key(resolve_files(paths, storage.storage_options))
    dead = {"key": key, "owner": "dead-run", "attempt": 0, "claimed_at": time.time() - 600,
            "expires_at": time.time() - 480}
    t.store.put_if_absent(t.loc.join(META_DIR, CLAIMS_DIR, claim_name(key), "000000.json"), json.dumps(dead).encode())
    r = t.add(paths)
    assert not r.skipped and r.rows_added == 30 and r.key == key
    names = t.store.list_names(t.loc.join(META_DIR, CLAIMS_DIR, claim_name(key)))
    assert names == ["000000.json", "000001.json"]  # a new attempt, never the dead run's object reused
    assert t.add(paths).skipped


# -- failures leave no trace -----------------------------------------------------------------------

def _failing_commit(monkeypatch, exc=RuntimeError("injected: object store went away")):
    calls = []

    def boom(*a, **kw):
        calls.append(a)
        raise exc

    monkeypatch.setattr(lance.LanceDataset, "commit", staticmethod(boom))
    return calls


@pytest.mark.parametrize("source", ["memory", "parquet"])
def test_failure_between_write_and_commit_leaves_no_trace(storage, lake, tmp_path, monkeypatch, source):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM))
    before = TableState(t)
    assert before.files  # the first rows' data files
    data = make_rows(20, DIM, start=100) if source == "memory" else _sources(storage, tmp_path, start=100)[1]
    with monkeypatch.context() as m:
        calls = _failing_commit(m)
        with pytest.raises(lakevec.LakevecError) as ei:
            t.add(data)
        assert calls, "the fault was not injected at the commit"
    assert "injected" in str(ei.value) and "table 't'" in str(ei.value)
    before.assert_unchanged()  # version, rows and no data files left over
    # a retry commits exactly once
    r = t.add(data)
    assert r.rows_added in (20, 30) and t.version == before.version + 1
    if source == "parquet":
        assert t.add(data).skipped and t.version == before.version + 1


def test_failure_of_the_first_commit_of_a_new_table(lake, monkeypatch):
    # the first rows with user columns set them in the same commit (a Merge on the empty version)
    t = lake.create_table("t", dim=DIM)
    before = TableState(t)
    with monkeypatch.context() as m:
        _failing_commit(m)
        with pytest.raises(lakevec.LakevecError):
            t.add(make_rows(10, DIM))
    before.assert_unchanged()
    assert t.schema.names == ["id", "vector"]  # the user schema was not fixed by the failed ingestion
    t.add(make_rows(10, DIM))
    assert t.schema.names == ["id", "vector", "tag"] and t.count_rows() == 10


def test_failure_while_writing_fragments_deletes_the_written_ones(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(400, DIM))
    t.build_index(num_partitions=4)
    before = TableState(t)
    import lakevec.commit.fragments as write_mod
    real = write_mod.write_fragments
    calls = []

    def second_fails(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("injected: disk full")
        return real(*a, **kw)

    monkeypatch.setattr(write_mod, "write_fragments", second_fails)
    with pytest.raises(lakevec.LakevecError) as ei:
        t.add(make_rows(200, DIM, start=1000, seed=2))  # lands in several partitions: one write each
    assert len(calls) >= 2 and "injected" in str(ei.value)  # others may have been written (in parallel)
    before.assert_unchanged()


def test_keyboard_interrupt_at_commit_leaves_no_trace(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(5, DIM))
    before = TableState(t)
    with monkeypatch.context() as m:
        _failing_commit(m, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            t.add(make_rows(5, DIM, start=5))
    before.assert_unchanged()


def test_commit_conflict_is_reported_as_such(lake, monkeypatch):
    import lakevec.commit.protocol as protocol
    monkeypatch.setattr(protocol, "MAX_ATTEMPTS", 3)
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(5, DIM))
    before = TableState(t)
    with monkeypatch.context() as m:
        _failing_commit(m, OSError("Commit conflict for version 3: retryable concurrent transaction"))
        with pytest.raises(lakevec.CommitConflictError) as ei:
            t.add(make_rows(5, DIM, start=5))
    assert "nothing was committed" in str(ei.value)
    before.assert_unchanged()


def test_failed_ingestion_with_key_can_be_retried(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(5, DIM))
    with monkeypatch.context() as m:
        _failing_commit(m)
        with pytest.raises(lakevec.LakevecError):
            t.add(make_rows(5, DIM, start=5), idempotency_key="k1")
    from lakevec.commit.claims import CLAIMS_DIR, claim_name
    assert "k1" not in t.snapshot().state.keys
    assert t.store.list_names(t.loc.join(META_DIR, CLAIMS_DIR, claim_name("k1"))) == []  # the claim was released
    r = t.add(make_rows(5, DIM, start=5), idempotency_key="k1")
    assert not r.skipped and r.rows_added == 5 and t.count_rows() == 10
    assert t.add(make_rows(5, DIM, start=5), idempotency_key="k1").skipped


def test_ingestion_objects_live_in_the_table_metadata_folder(lake):
    from lakevec.commit.claims import CLAIMS_DIR, LEASES_DIR, claim_name
    t = lake.create_table("t", dim=DIM)
    r = t.add(make_rows(5, DIM), idempotency_key="nightly-1")
    st = t.snapshot().state
    assert t.store.list_names(t.loc.join(META_DIR, "commits")) == sorted(
        [f"{txn}.json" for _, txn in st.chain] + [f"{st.txn}.json"])
    assert t.store.list_names(t.loc.join(META_DIR, "ids")) == [f"{st.txn}.npy"]
    assert t.store.list_names(t.loc.join(META_DIR, CLAIMS_DIR, claim_name("nightly-1"))) == ["000000.json"]
    assert t.store.list_names(t.loc.join(META_DIR, LEASES_DIR)) == []  # the job's lease ended with it
    assert st.keys == {"nightly-1": r.version}
    assert len(data_files(t)) >= 1


def test_source_rewritten_with_the_same_size_is_a_new_source(storage, lake, tmp_path):
    # S3 modification times have one-second resolution: the identity of an object must not rely on them
    root = source_root(storage, tmp_path)
    first = arrow_rows(7, DIM, 200, seed=1)
    second = arrow_rows(7, DIM, 300, seed=2)
    from core_helpers import parquet_bytes
    assert len(parquet_bytes(first)) == len(parquet_bytes(second))
    path = write_parquet(storage, root, "daily.parquet", first)
    t = lake.create_table("t", dim=DIM)
    assert t.add(path).rows_added == 7
    write_parquet(storage, root, "daily.parquet", second)  # same path, same size, within the same second
    r = t.add(path)
    assert not r.skipped and r.rows_added == 7
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(200, 207)) + \
        list(range(300, 307))


# -- concurrent writers ------------------------------------------------------------------------------

def _second_writer_commits_before_finish(monkeypatch, other, data):
    import lakevec.commit.fragments as write_mod
    real = write_mod.FragmentSink.finish
    done = []

    def finish(self):
        out = real(self)
        if not done:
            done.append(1)
            other.add(data)
        return out

    monkeypatch.setattr(write_mod.FragmentSink, "finish", finish)


def test_concurrent_appends_both_commit(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM))
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    _second_writer_commits_before_finish(monkeypatch, other, make_rows(5, DIM, start=500))
    r = t.add(make_rows(7, DIM, start=100))
    assert r.rows_added == 7 and t.count_rows() == 22
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == \
        list(range(10)) + list(range(100, 107)) + list(range(500, 505))


def test_concurrent_first_ingestions_with_the_same_columns_both_commit(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    with monkeypatch.context() as m:
        _second_writer_commits_before_finish(m, other, make_rows(5, DIM, start=500))
        r = t.add(make_rows(7, DIM, start=100))  # both set the columns (id, vector, tag): both rows kept
    assert r.rows_added == 7 and t.schema.names == ["id", "vector", "tag"]
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(100, 107)) + list(range(500, 505))


def test_concurrent_first_ingestions_with_other_columns_conflict_without_trace(lake, monkeypatch):
    t = lake.create_table("t", dim=DIM)
    other = lakevec.connect(lake.uri, storage_options=lake.storage_options).open_table("t")
    files_before = data_files(t)
    with monkeypatch.context() as m:
        _second_writer_commits_before_finish(m, other, make_rows(5, DIM, start=500, tag=False))
        with pytest.raises(lakevec.CommitConflictError) as ei:
            t.add(make_rows(7, DIM, start=100))  # its first rows set columns the winner did not: refused
    assert "nothing was committed" in str(ei.value) or "retry" in str(ei.value)
    assert t.count_rows() == 5 and t.schema.names == ["id", "vector"]
    assert sorted(t.to_arrow(columns=["id"]).column("id").to_pylist()) == list(range(500, 505))
    assert len(data_files(t) - files_before) == 1, "the losing ingestion left data files behind"
    with pytest.raises(lakevec.SchemaError):  # a retry sees the winner's columns
        t.add(make_rows(7, DIM, start=100))


def test_commit_that_succeeded_but_reported_an_error_keeps_its_files(lake, monkeypatch):
    """The store committed, then the connection dropped: the rows are in the table, so their files must
    not be deleted as if the job had failed (the table would reference missing files)."""
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(5, DIM))
    v0 = t.version
    real = lance.LanceDataset.commit

    def commit_then_fail(*a, **kw):
        real(*a, **kw)
        raise OSError("injected: connection reset by peer after the commit")

    with monkeypatch.context() as m:
        m.setattr(lance.LanceDataset, "commit", staticmethod(commit_then_fail))
        r = t.add(make_rows(6, DIM, start=100), idempotency_key="lost-response")
    assert r.rows_added == 6 and r.version == v0 + 1 == t.version
    got = t.to_arrow(columns=["id", "vector"])  # every data file is still there
    assert sorted(got.column("id").to_pylist()) == list(range(5)) + list(range(100, 106))
    assert t.snapshot().state.keys["lost-response"] == r.version
    assert t.add(make_rows(6, DIM, start=100), idempotency_key="lost-response").skipped
