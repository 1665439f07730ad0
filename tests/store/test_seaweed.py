"""Tests of the embedded S3 server (lakevec.store.seaweed) and of the storage fixtures built on it."""
from __future__ import annotations

import glob
import os
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from lakevec.store import seaweed
from lakevec.store.seaweed import EmbeddedS3


def _all_ports(srv: EmbeddedS3) -> set[int]:
    return {q for p in srv.ports.values() for q in (p, p + 10000)}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_find_weed_returns_the_packaged_binary():
    weed = seaweed.find_weed()
    out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=30).stdout
    assert os.access(weed, os.X_OK)
    assert out.startswith("version "), out


def test_start_write_read_stop_cleans_up(s3_server):
    srv = EmbeddedS3(buckets=("alpha", "beta"))
    with srv:
        pid, workdir, ports = srv.pid, srv.workdir, _all_ports(srv)
        assert srv.running and os.path.isdir(workdir)
        # A second server on the same machine gets its own ports.
        assert not ports & _all_ports(s3_server)
        client = srv.client()
        assert {b["Name"] for b in client.list_buckets()["Buckets"]} == {"alpha", "beta"}
        client.put_object(Bucket="beta", Key="dir/hello.txt", Body=b"hello lake")
        assert client.get_object(Bucket="beta", Key="dir/hello.txt")["Body"].read() == b"hello lake"
        socks = [s for p in ports for s in glob.glob(f"/tmp/seaweedfs-*-{p}.sock")]
        assert socks, "weed should have created its gRPC sockets in /tmp"
    assert not srv.running and srv.pid is None
    assert not _group_alive(pid), "weed process group still alive after stop()"
    assert not os.path.exists(workdir), "temporary work directory not removed"
    assert not [s for p in ports for s in glob.glob(f"/tmp/seaweedfs-*-{p}.sock")]
    srv.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.endpoint
    # The session server is untouched by the other one's stop.
    assert s3_server.client().list_buckets()["Buckets"]


def test_options_env_and_uri(s3_server):
    ep = s3_server.endpoint
    assert ep == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.storage_options == {
        "aws_access_key_id": "lakevec", "aws_secret_access_key": "lakevec-secret",
        "aws_endpoint": ep, "aws_region": "us-east-1", "allow_http": "true",
    }
    env = s3_server.env
    assert env["AWS_ENDPOINT_URL"] == ep and env["AWS_ACCESS_KEY_ID"] == "lakevec"
    assert env["AWS_REGION"] == "us-east-1" and env["AWS_ALLOW_HTTP"] == "true"
    assert s3_server.uri("lakevec", "/a/b/") == "s3://lakevec/a/b"
    assert s3_server.uri("lakevec") == "s3://lakevec"


def test_conditional_put_refuses_overwrite(s3_server):
    # Lance commits a version with If-None-Match: * ; the server must refuse a second writer.
    client = s3_server.client()
    client.put_object(Bucket="lakevec", Key="cond/v1", Body=b"first", IfNoneMatch="*")
    with pytest.raises(client.exceptions.ClientError) as err:
        client.put_object(Bucket="lakevec", Key="cond/v1", Body=b"second", IfNoneMatch="*")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert client.get_object(Bucket="lakevec", Key="cond/v1")["Body"].read() == b"first"


def test_pyarrow_filesystem_reads_and_writes(s3_server):
    fs = pafs.S3FileSystem(
        access_key=s3_server.access_key, secret_key=s3_server.secret_key,
        endpoint_override=f"127.0.0.1:{s3_server.port}", scheme="http", region="us-east-1",
    )
    payload = os.urandom(3 << 20)
    with fs.open_output_stream("lakevec/pa/blob.bin") as f:
        f.write(payload)
    with fs.open_input_file("lakevec/pa/blob.bin") as f:
        assert f.size() == len(payload)
        assert f.read_at(1000, 12345) == payload[12345:13345]  # ranged GET
    listed = fs.get_file_info(pafs.FileSelector("lakevec/pa"))
    assert [i.path for i in listed] == ["lakevec/pa/blob.bin"]


def test_lance_roundtrip_on_s3(s3_server):
    import lance

    uri = s3_server.uri("lakevec", "lance-roundtrip")
    vectors = np.random.default_rng(0).random((500, 16), dtype=np.float32)
    tbl = pa.table({
        "id": np.arange(500),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 16),
    })
    lance.write_dataset(tbl, uri, storage_options=s3_server.storage_options)
    lance.write_dataset(tbl, uri, storage_options=s3_server.storage_options, mode="append")
    ds = lance.dataset(uri, storage_options=s3_server.storage_options)
    assert ds.version == 2 and ds.count_rows() == 1000
    got = ds.to_table(filter="id = 7", columns=["vector"])["vector"].to_numpy(zero_copy_only=False)
    assert np.array_equal(np.stack(got)[0], vectors[7])


def test_given_workdir_is_kept_and_data_survives_restart(tmp_path):
    wd = tmp_path / "s3"
    with EmbeddedS3(workdir=wd) as srv:
        srv.client().put_object(Bucket="lakevec", Key="keep/me", Body=b"persisted")
    assert wd.is_dir() and (wd / "data").is_dir()
    with EmbeddedS3(workdir=wd) as srv:  # new ports, same data; the bucket already exists
        assert srv.client().get_object(Bucket="lakevec", Key="keep/me")["Body"].read() == b"persisted"
    assert not (wd / "s3.sock").exists() and not (wd / "filer.sock").exists()


def test_startup_failure_raises_with_log_tail(tmp_path, monkeypatch):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fake weed: cannot start'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(seaweed, "find_weed", lambda: str(fake))
    srv = EmbeddedS3()
    with pytest.raises(RuntimeError, match=r"exited with code 3(.|\n)*fake weed: cannot start"):
        srv.start()
    assert not srv.running and srv.workdir is None


def test_storage_fixture_gives_fresh_usable_roots(storage, tmp_path):
    import lance

    if storage.kind == "local":
        assert storage.storage_options is None
        assert storage.uri.startswith(str(tmp_path)) and not os.path.exists(storage.uri)
    else:
        assert storage.uri.startswith("s3://lakevec/") and len(storage.uri) > len("s3://lakevec/") + 16
        assert storage.storage_options["allow_http"] == "true"
    uri = storage.uri + "/probe.lance"
    lance.write_dataset(pa.table({"x": [1, 2, 3]}), uri, storage_options=storage.storage_options)
    assert lance.dataset(uri, storage_options=storage.storage_options).to_table()["x"].to_pylist() == [1, 2, 3]


@pytest.mark.skipif(not seaweed._pdeathsig_prefix(), reason="needs Linux setpriv --pdeathsig")
def test_killed_owner_takes_weed_along_and_leftovers_are_swept(tmp_path):
    import json
    import signal
    import sys
    import time

    import psutil

    script = "from lakevec.store.seaweed import EmbeddedS3\nimport json, time\n" \
             "s = EmbeddedS3().start()\nprint(json.dumps([s.pid, s.workdir]), flush=True)\ntime.sleep(120)\n"
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid, workdir = json.loads(owner.stdout.readline())
        assert psutil.pid_exists(pid) and os.path.isdir(workdir)
    finally:
        owner.send_signal(signal.SIGKILL)  # no atexit, no stop()
        owner.wait()
    deadline = time.monotonic() + 20
    while seaweed._weed_alive(pid, workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not seaweed._weed_alive(pid, workdir), "weed outlived its killed owner"
    assert os.path.isdir(workdir)  # nobody ran stop(): the next start() sweeps it
    seaweed._sweep_dead_servers()
    assert not os.path.exists(workdir)


def test_sweep_leaves_live_servers_alone(s3_server):
    seaweed._sweep_dead_servers()
    assert os.path.isdir(s3_server.workdir)
    assert s3_server.client().list_buckets()["Buckets"]
