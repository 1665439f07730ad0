"""Admission decisions of NvmeCache under concurrency, without an object store: files are handed to the
admission step directly, and thread interleavings are forced with events (no sleeps, no timing)."""
from __future__ import annotations

import os
import threading
import zlib

from lakevec.cache import nvme
from lakevec.cache.files import new_temp_path
from lakevec.cache.nvme import NvmeCache

TBL = "s3://bucket/lake/t"
IDX = "index-1"


def unit(part: int) -> tuple[str, str, int]:
    return (TBL, IDX, part)


def key_of(name: str) -> str:
    return f"{TBL}/data.lance/data/{name}.lance"


def admit(cache: NvmeCache, name: str, part: int, size: int) -> bool:
    """Run the admission of a freshly downloaded file of ``size`` bytes of partition ``part``."""
    cache._ensure_dirs()
    tmp = new_temp_path(cache.tmp_dir)
    body = name.encode()[:1] * size
    with open(tmp, "wb") as f:
        f.write(body)
    key = key_of(name)
    admitted, _ = cache._admit_and_publish(key, unit(part), size, zlib.crc32(body), tmp, cache.path_of(key))
    if not admitted:
        os.unlink(tmp)
    return admitted


def test_admission_sees_hits_buffered_by_another_thread(tmp_path, monkeypatch):
    """Hits are buffered in memory and written by the next transaction. A miss on another thread must
    not decide against stale statistics: if thread A has taken the buffered hits of the hot partition
    but not yet written them, thread B's admission must still see the hot partition as hot."""
    monkeypatch.setattr(nvme, "FLUSH_SECONDS", 1e9)  # keep the hits buffered however slow this machine is
    cache = NvmeCache(str(tmp_path / "c"), 100, max_object_fraction=1.0)
    assert admit(cache, "hot", 1, 100)  # the cache is now full
    for _ in range(4):
        cache._record_hit(unit(1), 100)
    assert cache._pending  # four hits waiting in memory

    real_txn = cache.db.txn
    a_wants_the_db = threading.Event()

    def txn(*args, **kwargs):
        if threading.current_thread().name == "reader-a":
            a_wants_the_db.set()
        return real_txn(*args, **kwargs)

    monkeypatch.setattr(cache.db, "txn", txn)
    outcome = {}
    with cache.db._lock:  # the database is busy: reader A queues for it...
        a = threading.Thread(target=lambda: outcome.setdefault("a", admit(cache, "scan-a", 2, 100)), name="reader-a")
        a.start()
        assert a_wants_the_db.wait(60)
        outcome["b"] = admit(cache, "scan-b", 3, 100)  # ...and reader B (this thread) decides first
    a.join(60)
    assert not a.is_alive()
    # a partition read once must not displace one read five times, whichever reader went first
    assert outcome == {"a": False, "b": False}
    assert set(cache.cached_by_partition(TBL, IDX)) == {1}
    st = cache.stats()
    assert st["lifetime"]["rejected"] == 2 and st["lifetime"]["evicted_files"] == 0
    assert cache.partition_stats(TBL, IDX)[1]["hits"] == 4


def test_a_scanned_partition_is_not_admitted_over_a_hot_one_when_full(tmp_path):
    cache = NvmeCache(str(tmp_path / "c"), 300, max_object_fraction=1.0)
    assert admit(cache, "hot", 1, 200)
    for _ in range(3):
        cache._record_hit(unit(1), 200)
    assert admit(cache, "scan-1", 2, 100)  # free space: admitted
    assert not admit(cache, "scan-big", 3, 150)  # fits only by evicting the hot partition: rejected
    assert set(cache.cached_by_partition(TBL, IDX)) == {1, 2}
    assert cache.stats()["used_bytes"] <= 300

