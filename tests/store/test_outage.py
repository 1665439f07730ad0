"""Store outages: every store call fails within the lake's deadline with a StorageError, never hangs, and
works again once the server is back on the same data folder.

A real SeaweedFS server with a work directory of its own, behind a real HTTP proxy (``CountingProxy``) whose
address stays the same when the server restarts on new ports, so one Lake object lives through the outage.
Two kinds of outage:
  * frozen: the server is stopped with SIGSTOP. The kernel still accepts connections and nothing answers,
    the case that used to hang for minutes (a Lance open 362 s, a small-object read 183 s, a conditional
    put 129 s);
  * dead: the server is killed (SIGKILL, while frozen, so no queued request lands); connections fail.
Then the server starts again on the same folder: the same calls succeed and the data is intact.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

import lakevec
from lakevec.bench.s3proxy import CountingProxy
from lakevec.errors import InvalidArgumentError, StorageError
from lakevec.store.seaweed import EmbeddedS3

D = 10.0  # the deadline configured for the lakes under test (seconds)
SLACK = 2.0  # scheduling noise on a shared machine
ROWS, DIM, PARTS = 3000, 16, 12


@dataclass
class Site:
    srv: EmbeddedS3
    proxy: CountingProxy
    uri: str
    options: dict  # through the proxy, default deadline
    vectors: np.ndarray
    version: int

    def lake(self, **extra):
        # no in-process cache of partitions: every search reads the store
        return lakevec.connect(self.uri, storage_options=dict(self.options, **extra), memory_cache_bytes=0)

    def freeze(self):
        os.killpg(self.srv.pid, signal.SIGSTOP)

    def kill(self):
        os.killpg(self.srv.pid, signal.SIGKILL)  # works on a frozen process: queued requests never run
        self.srv.stop()  # reaps it and removes its sockets; the work directory (the data) stays

    def restart(self):
        self.srv.start()  # same work directory, new ports
        self.proxy._server.upstream = ("127.0.0.1", self.srv.port)
        key = self.uri.split("/", 3)[3] + "/_lakevec.json"
        deadline = time.monotonic() + 60
        while True:  # the store is back once it serves an object written before the outage
            try:
                self.srv.client().get_object(Bucket="lakevec", Key=key)["Body"].read()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    srv = EmbeddedS3(workdir=tmp_path_factory.mktemp("s3-outage")).start()
    proxy = CountingProxy(srv.endpoint).start()
    try:
        uri = srv.uri("lakevec", f"outage-{uuid.uuid4().hex[:8]}")
        opts = dict(srv.storage_options, aws_endpoint=proxy.endpoint)
        lake = lakevec.connect(uri, storage_options=opts)
        t = lake.create_table("t", dim=DIM)
        x = np.random.default_rng(3).standard_normal((ROWS, DIM)).astype(np.float32)
        t.add({"id": np.arange(ROWS), "vector": x, "g": np.arange(ROWS) % 5})
        t.build_index(num_partitions=PARTS)
        yield Site(srv, proxy, uri, opts, x, t.version)
    finally:
        if srv.pid is not None:
            os.killpg(srv.pid, signal.SIGCONT)
        proxy.stop()
        srv.stop()


def fails_in_time(fn, limit: float = D) -> StorageError:
    """Call ``fn``; assert it raises a StorageError within ``limit`` (+ slack) seconds; return the error."""
    t0 = time.monotonic()
    with pytest.raises(StorageError) as ei:
        fn()
    took = time.monotonic() - t0
    print(f"failed in {took:.1f} s (deadline {limit:g} s): {str(ei.value)[:120]}")
    assert took < limit + SLACK, f"took {took:.1f} s, deadline {limit} s: {ei.value}"
    msg = str(ei.value)
    assert ".rs:" not in msg and "/home/runner" not in msg, msg
    return ei.value


def outage_then_recovery(site: Site, call, check, where: str):
    """Freeze the server: ``call`` fails in time naming ``where``; kill it: fails in time again; start it
    on the same folder: ``check(call())`` holds."""
    site.freeze()
    try:
        err = fails_in_time(call)
        assert where in str(err), str(err)
    finally:
        site.kill()
    try:
        err = fails_in_time(call)
        assert where in str(err), str(err)
    finally:
        site.restart()
    check(call())


def test_the_configured_deadline_reaches_every_client(site):
    lake = site.lake(store_timeout=str(D))
    d = lake.loc.deadline
    assert lake.loc.store_timeout == D and lake.lance_options["store_timeout"] == f"{D:g}"
    assert lake.lance_options["timeout"] == f"{int(D / 3 * 1000)}ms"
    fs_args = lake.store.fs.__reduce__()[1][0]  # what the pyarrow S3FileSystem was made with
    assert fs_args["request_timeout"] == d.idle and fs_args["connect_timeout"] == d.connect
    assert lake.store._s3_client().meta.config.read_timeout == d.idle
    assert lake.store._s3_client().meta.config.connect_timeout == d.connect
    # an explicit Lance key wins over the derived one
    assert site.lake(store_timeout="30", timeout="45s").lance_options["timeout"] == "45s"
    for bad in ("0", "-3", "abc", "2"):
        with pytest.raises(InvalidArgumentError, match="store_timeout"):
            site.lake(store_timeout=bad)


def test_search_fails_within_the_deadline_and_works_after_restart(site):
    lake = site.lake(store_timeout=str(D))
    t = lake.open_table("t")
    q = site.vectors[:5]
    expected = t.search(q, k=10)
    pinned = t.checkout(site.version)
    pinned.search(q, k=10)  # its snapshot is read: the outage hits the partition reads

    def both():
        return t.search(q, k=10), pinned.search(q, k=10)

    def check(res):
        for r in res:
            assert r.column("id").to_pylist() == expected.column("id").to_pylist()

    site.freeze()
    try:
        err = fails_in_time(lambda: t.search(q, k=10))
        assert f"table 't' at {site.uri}/t/data.lance" in str(err) and "did not answer" in str(err)
        err = fails_in_time(lambda: pinned.search(q, k=10))
        assert site.uri in str(err) and "data.lance" in str(err), str(err)
    finally:
        site.kill()
    try:
        fails_in_time(lambda: t.search(q, k=10))
        fails_in_time(lambda: pinned.search(q, k=10))
    finally:
        site.restart()
    check(both())  # the same objects, no reconnect
    assert t.count_rows() == ROWS


def test_table_open_fails_within_the_deadline_and_works_after_restart(site):
    lake = site.lake(store_timeout=str(D))

    def call():
        t = lake.open_table("t")
        return t.snapshot()

    def check(snap):
        assert snap.num_rows == ROWS and snap.index is not None and len(snap.by_partition) == PARTS

    outage_then_recovery(site, call, check, f"{site.uri}/t/")


def test_an_open_honours_a_shorter_deadline_from_the_environment(site, monkeypatch):
    monkeypatch.setenv("LAKEVEC_STORE_TIMEOUT", "6")
    lake = site.lake()
    t = lake.open_table("t")
    assert lake.loc.store_timeout == 6.0
    site.freeze()
    try:
        t0 = time.monotonic()
        err = fails_in_time(t.snapshot, limit=6.0)
        assert time.monotonic() - t0 > 3.0  # the deadline, not an instant refusal
        assert "within 6 s" in str(err), str(err)
    finally:
        os.killpg(site.srv.pid, signal.SIGCONT)


def test_small_object_reads_fail_within_the_deadline_and_work_after_restart(site):
    lake = site.lake(store_timeout=str(D))
    marker = lake.loc.join("_lakevec.json")
    before = lake.store.read_json(marker)

    def call():
        return lake.store.read_json(marker), lake.store.list_names(lake.loc.join("t")), lake.store.exists(marker)

    def check(res):
        body, names, exists = res
        assert body == before and {"data.lance", "_lakevec", "index"} <= set(names) and exists

    outage_then_recovery(site, call, check, marker)


def test_put_if_absent_fails_within_the_deadline_and_works_after_restart(site):
    lake = site.lake(store_timeout=str(D))
    claim = lake.loc.join("claims", f"{uuid.uuid4().hex}.json")
    body = f'{{"owner": "{uuid.uuid4().hex}"}}'.encode()

    def call():
        return lake.store.put_if_absent(claim, body)

    def check(created):
        assert created is True
        assert lake.store.read_bytes(claim) == body
        assert lake.store.put_if_absent(claim, b"someone else") is False  # exactly one creator

    outage_then_recovery(site, call, check, claim)
