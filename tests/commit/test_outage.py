"""A store outage in the middle of a write: the job fails fast with a StorageError, the table keeps its version,
and once the store is back a re-run completes with every row exactly once.

The S3 server is stopped for real (``EmbeddedS3.stop`` with a ``workdir`` that keeps its data) at a chosen
point of the job, then started again on the same data folder (it gets new ports: the re-run connects again).
"""
from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from core_helpers import make_rows

import lakevec
import lakevec.commit.fragments as fragments
import lakevec.commit.protocol as protocol
from lakevec.store.seaweed import EmbeddedS3

DIM = 8
DEADLINE = 60.0  # the bound for a job to fail once its store is gone


@pytest.fixture
def own_server(tmp_path):
    srv = EmbeddedS3(workdir=tmp_path / "s3", buckets=("lakevec",))
    srv.start()
    yield srv
    srv.stop()


def _lake(srv, prefix):
    return lakevec.connect(srv.uri("lakevec", prefix), storage_options=dict(srv.storage_options))


def _table(srv, prefix):
    return _lake(srv, prefix).open_table("t")


@pytest.mark.parametrize("where", ["writing", "committing"])
def test_outage_during_an_add_fails_fast_and_a_rerun_lands_once(own_server, where, monkeypatch):
    prefix = uuid.uuid4().hex
    t = _lake(own_server, prefix).create_table("t", dim=DIM)
    t.add(make_rows(300, DIM, tag=False))
    t.build_index(num_partitions=3)
    v0 = t.version
    stopped = []

    def stop_server(*a, **k):
        if not stopped:
            stopped.append(time.monotonic())
            own_server.stop()

    if where == "writing":
        real = fragments.FragmentSink.flush

        def flush(self):
            stop_server()
            return real(self)
        monkeypatch.setattr(fragments.FragmentSink, "flush", flush)
    else:
        monkeypatch.setattr(protocol, "_before_lance_commit", stop_server)
    with pytest.raises(lakevec.StorageError) as ei:
        t.add(make_rows(200, DIM, start=1000, seed=3, tag=False), idempotency_key="batch-7")
    took = time.monotonic() - stopped[0]
    assert took < DEADLINE, f"the job took {took:.0f}s to fail after the outage"
    assert "unreachable" in str(ei.value) or "connect" in str(ei.value).lower(), ei.value
    monkeypatch.undo()
    own_server.start()  # the store is back (same data, new endpoint)
    t2 = _table(own_server, prefix)
    assert t2.version == v0 and t2.count_rows() == 300  # the failed job left the table as it was
    r = t2.add(make_rows(200, DIM, start=1000, seed=3, tag=False), idempotency_key="batch-7")
    assert r.rows_added == 200 and not r.skipped
    ids = np.sort(t2.to_arrow(columns=["id"]).column("id").to_numpy())
    assert np.array_equal(ids, np.r_[np.arange(300), np.arange(1000, 1200)])  # each row exactly once
    assert t2.add(make_rows(200, DIM, start=1000, seed=3, tag=False), idempotency_key="batch-7").skipped


def test_outage_during_an_index_build_fails_fast_and_leaves_the_table(own_server, monkeypatch):
    prefix = uuid.uuid4().hex
    t = _lake(own_server, prefix).create_table("t", dim=DIM)
    t.add(make_rows(500, DIM, tag=False))
    v0 = t.version
    stopped = []

    def stop_server(tt, change, parent):
        if change.op == "index" and not stopped:
            stopped.append(time.monotonic())
            own_server.stop()

    monkeypatch.setattr(protocol, "_before_lance_commit", stop_server)
    with pytest.raises(lakevec.StorageError):
        t.build_index(num_partitions=4)
    assert time.monotonic() - stopped[0] < DEADLINE
    monkeypatch.undo()
    own_server.start()
    t2 = _table(own_server, prefix)
    assert t2.version == v0 and t2.index_info() is None and t2.count_rows() == 500
    m = t2.build_index(num_partitions=4)
    assert t2.index_info()["index_id"] == m.index_id and t2.count_rows() == 500
