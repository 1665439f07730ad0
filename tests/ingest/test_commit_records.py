"""A failure after the commit (writing the idempotency record) must never delete committed files."""
import numpy as np
import pytest

import lakevec
from lakevec.ingest import job


def test_record_failure_after_commit_keeps_the_committed_rows(tmp_path, monkeypatch):
    lake = lakevec.connect(str(tmp_path / "lake"))
    t = lake.create_table("t", dim=4)
    x = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    real = job._write_record

    def failing(table, key, rec):
        if rec.get("state") == "committed":  # the commit has happened: only the bookkeeping fails
            raise lakevec.StorageError("injected: record write failed")
        return real(table, key, rec)

    monkeypatch.setattr(job, "_write_record", failing)
    with pytest.raises(lakevec.StorageError, match="injected"):
        t.add({"id": np.arange(100), "vector": x}, idempotency_key="k1")
    monkeypatch.setattr(job, "_write_record", real)
    assert t.count_rows() == 100  # the committed files are still there and readable
    assert t.to_arrow(columns=["id"]).num_rows == 100
    # the pending record names the committed files, so a retry recognises the commit
    assert t.add({"id": np.arange(100), "vector": x}, idempotency_key="k1").skipped
    assert t.count_rows() == 100
