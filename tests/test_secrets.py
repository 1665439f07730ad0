"""Secrets never shown: reprs of locations, options and task records, pickled copies and log lines carry no
value of ``aws_secret_access_key`` or ``aws_session_token``; the options still work (a real S3 lake)."""
from __future__ import annotations

import logging
import pickle
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

import lakevec
from lakevec.store.location import parse_location
from lakevec.store.secrets import SecretDict, is_secret_key

TOKEN = f"session-token-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class TaskRecord:  # the shape of lakevec's task records: URIs and storage options
    data_uri: str
    storage_options: dict | None
    fragment_ids: tuple


def shows_no_secret(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, f"secret shown in: {text}"


@pytest.fixture
def s3_lake(s3_server):
    secret = s3_server.secret_key
    lake = lakevec.connect(s3_server.uri("lakevec", f"secrets-{uuid.uuid4().hex[:8]}"),
                           storage_options=dict(s3_server.storage_options))
    t = lake.create_table("t", dim=4)
    t.add({"id": np.arange(50), "vector": np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)})
    return lake, t, secret


def test_reprs_of_a_real_s3_lake_show_no_secret(s3_lake):
    lake, t, secret = s3_lake
    for obj in (lake.loc, t.loc, lake.lance_options, lake.loc.options, lake.loc.child("x"), lake, t):
        shows_no_secret(repr(obj), secret)
        shows_no_secret(str(obj), secret)
    assert "aws_secret_access_key" in repr(lake.lance_options) and "***" in repr(lake.lance_options)
    assert repr(lake.loc).startswith(f"Location({lake.uri!r}") and "aws_access_key_id" in repr(lake.loc)
    task = TaskRecord(t.data_uri, t.lake.lance_options, (1, 2))
    shows_no_secret(repr(task), secret)
    shows_no_secret(repr([task, {"opts": t.lake.lance_options}]), secret)
    # the values are all there for the clients: the lake works, and a pickled copy too
    assert lake.lance_options["aws_secret_access_key"] == secret
    copy = pickle.loads(pickle.dumps(task))
    assert isinstance(copy.storage_options, SecretDict) and copy.storage_options == task.storage_options
    shows_no_secret(repr(copy), secret)
    loc2 = pickle.loads(pickle.dumps(lake.loc))
    assert loc2 == lake.loc
    shows_no_secret(repr(loc2), secret)
    import lance
    assert lance.dataset(copy.data_uri, storage_options=copy.storage_options).count_rows() == 50
    assert t.search(np.zeros(4, dtype=np.float32), k=3).num_rows == 3


def test_session_tokens_and_other_secret_keys_are_masked(monkeypatch):
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    loc = parse_location("s3://bucket/lake", {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t-value",
                                              "aws_session_token": TOKEN})
    for text in (repr(loc), str(loc), repr(loc.lance_options()), str(loc.options), repr(loc.child("t"))):
        shows_no_secret(text, "s3cr3t-value", TOKEN)
    assert "AKIAEXAMPLE" in repr(loc)  # the key id is an identifier, shown
    assert loc.lance_options()["aws_session_token"] == TOKEN
    assert [k for k in ("aws_secret_access_key", "aws_session_token", "aws_access_key_id", "azure_storage_account_key",
                        "google_service_account_key", "aws_region") if is_secret_key(k)] == [
        "aws_secret_access_key", "aws_session_token", "azure_storage_account_key", "google_service_account_key"]


def test_log_lines_show_no_secret(s3_lake, caplog):
    lake, t, secret = s3_lake
    opts = dict(lake.lance_options)  # a plain dict copy: its repr shows the secret, the log line must not
    late = f"lakevec.created_after_connect_{uuid.uuid4().hex[:6]}"
    with caplog.at_level(logging.DEBUG, logger="lakevec"):
        logging.getLogger("lakevec").warning("connecting with %s", opts)
        logging.getLogger("lakevec.cache").warning("key=%s", secret)
        logging.getLogger(late).error("late logger: %r", opts)
        try:
            raise RuntimeError(f"request signed with {secret}")
        except RuntimeError:
            logging.getLogger("lakevec.store").exception("failed")
    lines = [caplog.handler.format(r) for r in caplog.records]
    assert len(lines) == 4 and all("***" in line for line in lines)
    for line in lines + [caplog.text]:
        shows_no_secret(line, secret)
    assert "lakevec" in caplog.text and "aws_secret_access_key" in caplog.text


def test_ingest_task_records_and_the_lake_show_no_secret(s3_lake, s3_server):
    """The planned tasks of a distributed ingestion (what Spark/Ray pickle and log) and the lake's own copy of
    the options mask the secret, and still work."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakevec.ingest.convert import resolve_files
    from lakevec.ingest.distributed import IngestTarget, _source_options, plan_slices
    from lakevec.ingest.schema import table_spec
    lake, t, secret = s3_lake
    src = s3_server.uri("lakevec", f"src-{uuid.uuid4().hex[:8]}/part.parquet")
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": np.arange(100, 110), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(np.ones(40, np.float32)), 4)}), buf)
    lake.store.write_bytes(src, buf.getvalue())
    files = resolve_files(src, lake.storage_options)
    opts = _source_options(files, lake.storage_options)
    target = IngestTarget(t.name, t.loc.uri, t.data_uri, t.lake.lance_options, table_spec(t, t._open_latest()), "append",
                          "raise")
    tasks = plan_slices(files, opts, target, 1 << 30)
    for text in (repr(tasks), str(tasks), repr(lake.storage_options), repr(pickle.loads(pickle.dumps(tasks)))):
        shows_no_secret(text, secret)
    assert t.add(src).rows_added == 10  # the masked options still carry the secret to the store
