"""Vacuum never removes what a kept version or a running job can use (local disk and the S3 server)."""
from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from core_helpers import data_files, make_rows

import lakevec
from lakevec.commit import WriteJob
from lakevec.state import CHECKPOINT_EVERY

DIM = 8


def test_minimum_retention_is_seven_days_unless_forced(lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM))
    for short in (0, 3600, dt.timedelta(days=6, hours=23)):
        with pytest.raises(lakevec.InvalidArgumentError, match="force"):
            t.vacuum(older_than=short)
    assert t.vacuum()["older_than_seconds"] == 7 * 86400  # the default
    assert t.vacuum(older_than=dt.timedelta(days=8))["versions_removed"] == 0
    assert t.vacuum(older_than=0, force=True)["versions_removed"] >= 1


def test_a_running_jobs_files_survive_a_vacuum_shorter_than_the_job(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(10, DIM))
    with WriteJob(t, "ingest") as job:  # a long job: it has written a file and not committed yet
        inflight = t.data_uri + f"/data/{job.txn}-part.lance"
        t.store.write_bytes(inflight, b"x" * 64)
        time.sleep(1.1)
        out = t.vacuum(older_than=0, force=True)  # even the shortest retention
        assert out["live_jobs"] == 1 and t.store.exists(inflight)
    # the job ended without committing: its file is an orphan now
    out = t.vacuum(older_than=0, force=True)
    assert not t.store.exists(inflight) and out["data_files_removed"] >= 1
    assert t.count_rows() == 10


def test_every_kept_version_can_still_be_read_after_vacuum(storage, lake):
    t = lake.create_table("t", dim=DIM)
    t.add(make_rows(200, DIM, tag=False))
    t.build_index(num_partitions=2)
    for i in range(CHECKPOINT_EVERY + 3):
        t.add(make_rows(5, DIM, start=1000 + 5 * i, seed=i, tag=False), idempotency_key=f"k{i}")
    time.sleep(2.5)
    cut, t_cut = t.version, time.time()
    expected = {}
    for i in range(CHECKPOINT_EVERY + 3):  # newer versions, kept by the retention below
        r = t.add(make_rows(5, DIM, start=5000 + 5 * i, seed=100 + i, tag=False), idempotency_key=f"n{i}")
        expected[r.version] = t.count_rows()
    out = t.vacuum(older_than=time.time() - t_cut + 1.0, force=True)
    assert out["versions_removed"] >= cut - 1
    fresh = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("t")
    q = make_rows(5, DIM, start=5000, seed=100, tag=False)["vector"][:1]
    for v, rows in expected.items():
        old = fresh.checkout(v)
        assert old.count_rows() == rows and old.snapshot().index is not None
        assert old.search(q, k=1).column("id").to_pylist() == [5000]
        assert "k3" in old.snapshot().state.keys  # keys committed by removed versions are still known
    with pytest.raises(lakevec.InvalidArgumentError):
        fresh.checkout(2)  # removed


def test_dry_run_reports_exactly_what_a_real_run_removes(storage, lake):
    t = lake.create_table("t", dim=DIM)
    for k in range(5):
        t.add(make_rows(10, DIM, start=10 * k, seed=k))
    t.build_index(num_partitions=2)
    t.compact()
    t.store.write_bytes(t.data_uri + "/data/orphan.lance", b"z" * 10)
    before = data_files(t)
    dry = t.vacuum(older_than=0, force=True, dry_run=True)
    assert data_files(t) == before and t.version == dry["version"]
    real = t.vacuum(older_than=0, force=True)
    for k in ("versions_removed", "data_files_removed", "bytes_removed", "metadata_objects_removed",
              "indexes_removed", "claims_removed"):
        assert dry[k] == real[k], (k, dry, real)
    assert real["versions_removed"] > 0 and real["data_files_removed"] > 0
    assert np.array_equal(np.sort(t.to_arrow(columns=["id"]).column("id").to_numpy()), np.arange(50))
