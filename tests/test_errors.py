"""The exception tree, and the errors of the store: credentials, unreachable endpoints, buckets, local paths."""
from __future__ import annotations

import os
import socket
import time
import uuid

import numpy as np
import pytest
from core_helpers import hermetic_aws, make_rows  # noqa: F401

import lakevec
from lakevec import errors

pytestmark = pytest.mark.usefixtures("hermetic_aws")


def test_every_error_derives_from_lakevec_error():
    names = [n for n in dir(errors) if isinstance(getattr(errors, n), type)
             and issubclass(getattr(errors, n), Exception)]
    assert len(names) >= 12
    for n in names:
        assert issubclass(getattr(errors, n), lakevec.LakevecError), n
    for n in lakevec.__all__:
        obj = getattr(lakevec, n)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, lakevec.LakevecError)
    # the familiar base classes are kept for callers that catch them
    assert issubclass(lakevec.InvalidArgumentError, ValueError)
    assert issubclass(lakevec.StorageError, OSError)
    assert issubclass(lakevec.CredentialsError, lakevec.StorageError)
    assert issubclass(lakevec.SchemaError, lakevec.ValidationError)
    assert issubclass(lakevec.TableNotFoundError, KeyError)
    assert str(lakevec.TableNotFoundError("table 'x' not found")) == "table 'x' not found"  # no KeyError quotes


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_missing_credentials_for_s3(s3_server):
    uri = s3_server.uri("lakevec", uuid.uuid4().hex)
    with pytest.raises(lakevec.CredentialsError) as ei:
        lakevec.connect(uri, storage_options={"aws_endpoint": s3_server.endpoint})
    assert uri in str(ei.value) and "aws_access_key_id" in str(ei.value)
    with pytest.raises(lakevec.CredentialsError):
        lakevec.connect(uri)


def test_credentials_from_the_environment_work(s3_server, hermetic_aws):
    for k, v in s3_server.env.items():
        hermetic_aws.setenv(k, v)
    uri = s3_server.uri("lakevec", uuid.uuid4().hex)
    lake = lakevec.connect(uri)  # no storage_options at all
    t = lake.create_table("t", dim=4)
    t.add(make_rows(5, dim=4))
    assert lakevec.connect(uri).open_table("t").count_rows() == 5


@pytest.mark.parametrize("which", ["key", "secret"])
def test_wrong_credentials(s3_server, which):
    opts = dict(s3_server.storage_options)
    opts["aws_access_key_id" if which == "key" else "aws_secret_access_key"] = "wrong-" + uuid.uuid4().hex[:8]
    uri = s3_server.uri("lakevec", uuid.uuid4().hex)
    t0 = time.monotonic()
    with pytest.raises(lakevec.StorageError) as ei:  # CredentialsError is a StorageError
        lakevec.connect(uri, storage_options=opts)
    assert time.monotonic() - t0 < 30
    assert isinstance(ei.value, lakevec.CredentialsError), f"{type(ei.value).__name__}: {ei.value}"
    assert uri in str(ei.value) and "credentials" in str(ei.value)


def test_wrong_credentials_on_an_existing_lake(s3_server):
    uri = s3_server.uri("lakevec", uuid.uuid4().hex)
    lake = lakevec.connect(uri, storage_options=s3_server.storage_options)
    lake.create_table("t", dim=4).add(make_rows(3, dim=4))
    bad = {**s3_server.storage_options, "aws_secret_access_key": "nope"}
    with pytest.raises(lakevec.CredentialsError) as ei:
        lakevec.connect(uri, storage_options=bad)
    assert uri in str(ei.value)


def test_unreachable_endpoint_fails_fast(hermetic_aws):
    port = _closed_port()
    opts = {"aws_access_key_id": "a", "aws_secret_access_key": "b", "aws_endpoint": f"http://127.0.0.1:{port}"}
    t0 = time.monotonic()
    with pytest.raises(lakevec.StorageError) as ei:
        lakevec.connect("s3://lakevec/x", storage_options=opts)
    elapsed = time.monotonic() - t0
    assert elapsed < 30, f"took {elapsed:.1f}s to report an unreachable store"
    assert not isinstance(ei.value, lakevec.CredentialsError)
    assert "s3://lakevec/x" in str(ei.value) and "unreachable" in str(ei.value)


def test_nonexistent_bucket(s3_server):
    uri = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/lake"
    with pytest.raises(lakevec.StorageError) as ei:
        lakevec.connect(uri, storage_options=s3_server.storage_options)
    assert "does not exist" in str(ei.value) and uri.split("/")[2] in str(ei.value)


def test_lake_at_the_root_of_a_bucket(s3_server):
    bucket = f"root-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    lake = lakevec.connect(f"s3://{bucket}", storage_options=s3_server.storage_options)
    t = lake.create_table("t", dim=4)
    t.add(make_rows(6, dim=4))
    assert lake.table_names() == ["t"]
    again = lakevec.connect(f"s3://{bucket}/", storage_options=s3_server.storage_options)
    assert again.open_table("t").count_rows() == 6
    assert again.open_table("t").search(np.ones(4, np.float32), k=2).num_rows == 2


def test_local_path_that_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(lakevec.StorageError) as ei:
        lakevec.connect(str(f))
    assert str(f) in str(ei.value) and "not a folder" in str(ei.value)


def test_local_path_below_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(lakevec.LakevecError) as ei:
        lakevec.connect(str(f / "lake"))
    assert str(f) in str(ei.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_local_path_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(lakevec.StorageError, match="not writable"):
            lakevec.connect(str(ro / "lake"))
    finally:
        ro.chmod(0o700)


def test_table_data_missing_is_a_lakevec_error(tmp_path):
    import shutil
    lake = lakevec.connect(str(tmp_path / "lake"))
    t = lake.create_table("t", dim=4)
    t.add(make_rows(3, dim=4))
    shutil.rmtree(t.data_uri)
    with pytest.raises(lakevec.StorageError) as ei:
        lake.open_table("t").count_rows()
    assert "'t'" in str(ei.value) and "not found" in str(ei.value) and t.data_uri in str(ei.value)
    with pytest.raises(lakevec.LakevecError):
        lake.open_table("t").search(np.ones(4, np.float32), k=1)


def test_errors_from_a_stopped_store_are_lakevec_errors(tmp_path):
    from lakevec.store.seaweed import EmbeddedS3
    srv = EmbeddedS3().start()
    try:
        opts = dict(srv.storage_options)
        uri = srv.uri("lakevec", "gone")
        lake = lakevec.connect(uri, storage_options=opts)
        t = lake.create_table("t", dim=4)
        t.add(make_rows(3, dim=4))
    finally:
        srv.stop()
    t0 = time.monotonic()
    with pytest.raises(lakevec.StorageError):
        t.add(make_rows(3, dim=4, start=10))
    with pytest.raises(lakevec.StorageError):
        lake.table_names()
    with pytest.raises(lakevec.StorageError) as ei:  # not "version 1 does not exist"
        t.checkout(1)
    assert "unreachable" in str(ei.value)
    assert time.monotonic() - t0 < 90


def test_reading_a_table_with_a_missing_data_file_is_a_storage_error(tmp_path):
    lake = lakevec.connect(str(tmp_path / "lake"))
    t = lake.create_table("t", dim=4)
    t.add(make_rows(3, dim=4))
    data = os.path.join(t.data_uri, "data")
    for name in os.listdir(data):
        os.unlink(os.path.join(data, name))
    with pytest.raises(lakevec.StorageError) as ei:  # not "invalid filter": the caller did nothing wrong
        t.to_arrow()
    assert "'t'" in str(ei.value)
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        lake.create_table("u", dim=4).to_arrow(filter="nope > 1")
    assert "nope" in str(ei.value) and "/home/" not in str(ei.value)
    with pytest.raises(lakevec.InvalidArgumentError, match="filter"):
        lake.open_table("u").count_rows(filter="id = = 1")
