"""The NVMe cache against a real S3 server (SeaweedFS): hits, budget, scan resistance, integrity, loss of
the folder, several processes, and request counts checked at a counting proxy in front of the server."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lakevec
from lakevec.bench.s3proxy import CountingProxy
from lakevec.errors import CacheError

HERE = Path(__file__).resolve().parent
NPROBE = 4


def same_results(a, b) -> bool:
    if a.num_rows != b.num_rows:
        return False
    for c in ("query_index", "rank", "id"):
        if not np.array_equal(a.column(c).to_numpy(), b.column(c).to_numpy()):
            return False
    return np.allclose(a.column("distance").to_numpy(), b.column("distance").to_numpy(), rtol=1e-4, atol=2e-3)


def dir_bytes(path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def index_of(t) -> str:
    return t.snapshot().index.index_id


def cached_parts(lake, t) -> dict:
    """{partition: {key: size}} of the cached files of the partitions of ``t``'s index in force."""
    return lake.cache.cached_by_partition(t.loc.uri, index_of(t))


def cached_files(cache) -> list[str]:
    with cache.db.read() as c:
        return [os.path.join(cache.objects_dir, r[0]) for r in c.execute("SELECT file FROM entries")]


# -- hits -------------------------------------------------------------------------------------------

def test_repeated_search_reads_nothing_from_the_store_once_hot(s3_table, tmp_path):
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    r1 = s3_table.search(t)
    io1 = t.last_search_stats["io"]
    assert same_results(r1, s3_table.expected)
    assert io1["cache_misses"] > 0 and io1["gets"] > 0 and io1["cache_hits"] == 0
    r2 = s3_table.search(t)
    io2 = t.last_search_stats["io"]
    assert same_results(r2, s3_table.expected)
    assert io2["gets"] == 0 and io2["bytes_read"] == 0
    assert io2["cache_misses"] == 0 and io2["cache_hits"] == io1["cache_misses"]
    assert io2["cache_bytes_read"] == io1["bytes_read"]  # the same bytes, now from NVMe
    st = lake.cache.stats()
    assert st["lifetime"]["hits"] == io2["cache_hits"] and st["used_bytes"] == io1["bytes_read"]
    assert st["process"]["cache_hits"] == io2["cache_hits"]


def test_no_cache_dir_means_a_disabled_cache_with_counters(s3_table):
    lake, t = s3_table.connect()
    s3_table.search(t)
    st = lake.cache.stats()
    assert st["enabled"] is False and st["process"]["gets"] > 0 and st["estimated_cost_usd"] > 0
    with pytest.raises(CacheError, match="cache_dir"):
        lake.cache.warm("vecs")


def test_local_lake_is_read_in_place(tmp_path):
    lake = lakevec.connect(str(tmp_path / "lake"), cache_dir=str(tmp_path / "c"))
    t = lake.create_table("t", dim=4)
    t.add({"id": np.arange(200), "vector": np.random.default_rng(0).standard_normal((200, 4)).astype(np.float32)})
    t.build_index(num_partitions=4)
    t.search(np.zeros(4, np.float32), k=3)
    assert t.last_search_stats["io"]["cache_misses"] == 0
    assert "local disk" in lake.cache.warm("t")["note"]
    assert lake.cache.stats()["files"] == 0
    st = t.stats()
    assert st["bytes_per_tier"] == {"local_disk": st["bytes"], "nvme_cache": 0} and st["bytes"] > 0
    assert {p["tier"] for p in st["partitions"]} <= {"local", "empty"} and len(st["partitions"]) == 4


# -- budget and policy ---------------------------------------------------------------------------------

def test_eviction_keeps_the_byte_budget(s3_table, tmp_path):
    budget = int(s3_table.data_bytes * 0.3)
    lake, t = s3_table.connect(tmp_path / "c", budget)
    rng = np.random.default_rng(1)
    qs = s3_table.queries
    # group B becomes hot after group A filled the cache: B must displace A (evictions) within the budget
    group_a, group_b = qs[:6], qs[10:16]
    s3_table.search(t, group_a)
    for _ in range(4):
        for q in group_b:
            s3_table.search(t, q[None, :] + 0.01 * rng.standard_normal((1, qs.shape[1])).astype(np.float32))
            st = lake.cache.stats()
            assert st["used_bytes"] <= budget
            assert dir_bytes(lake.cache.objects_dir) <= budget
    st = lake.cache.stats()
    assert st["lifetime"]["evicted_files"] > 0
    assert st["lifetime"]["admitted"] > 0
    assert same_results(s3_table.search(t), s3_table.expected)


def test_a_large_scan_does_not_flush_the_hot_set(s3_table, tmp_path):
    """Full scans (every partition, read on 16 I/O threads in no fixed order) through a cache that the hot
    set nearly fills: the hot partitions are never evicted, scanned partitions fill the free space, and a
    scanned file that only fits by evicting hot data is rejected. Sized from the actual partitions, so
    the outcome depends neither on the k-means result nor on the order in which reads complete."""
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    snap = t.snapshot()
    hot_q = s3_table.queries[:1]
    hot_parts = set(snap.model.probe(hot_q, NPROBE).ravel().tolist())
    hot_bytes = sum(s3_table.partition_bytes[p] for p in hot_parts)
    files = {p: [f.file_size for f in frs] for p, frs in snap.by_partition.items()}
    cold_sizes = sorted(size for p, sizes in files.items() if p not in hot_parts for size in sizes)
    slack = cold_sizes[len(cold_sizes) // 2]  # free room next to the hot set: the smaller half of the files fit
    too_big = [size for size in cold_sizes if size > slack]  # these only fit by evicting hot partitions
    assert len(hot_parts) == NPROBE and len(too_big) >= 3
    lake.cache.budget = hot_bytes + slack
    lake.cache.max_object_fraction = 1.0  # every rejection below is the policy's, not the size cap's
    for _ in range(5):  # the hot set: one miss, then four hits per partition
        s3_table.search(t, hot_q)
    assert set(cached_parts(lake, t)) == hot_parts
    hot_files = sum(len(files[p]) for p in hot_parts)
    for i in range(2):  # full scans: every partition once
        t.search(s3_table.queries[5 + i], k=10, nprobe=snap.model.nlist)
        cached = cached_parts(lake, t)
        assert hot_parts <= set(cached)
        assert set(cached) - hot_parts  # scanned partitions took the free space...
        assert lake.cache.stats()["used_bytes"] <= lake.cache.budget
        life = lake.cache.stats()["lifetime"]
        assert life["rejected"] >= (i + 1) * len(too_big)  # ...but did not push the hot set out
    parts = lake.cache.partition_stats(t.loc.uri, index_of(t))
    # never evicted and read again: every hot file missed once (the first search), then always hit
    assert all(parts[p]["misses"] == len(files[p]) and parts[p]["hits"] == 6 * len(files[p]) for p in hot_parts)
    assert life["admitted"] > hot_files
    s3_table.search(t, hot_q)
    assert t.last_search_stats["io"]["gets"] == 0


def test_a_partition_that_keeps_coming_back_is_promoted(s3_table, tmp_path):
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    model = t.snapshot().model
    probes = [set(model.probe(q[None, :], 1)[0].tolist()) for q in s3_table.queries]
    a, b = next((i, j) for i in range(len(probes)) for j in range(len(probes)) if not probes[i] & probes[j])
    pa_, pb = probes[a].pop(), probes[b].pop()
    # room for the larger of the two partitions only (and no cap on one object's share of the budget)
    lake.cache.budget = max(s3_table.partition_bytes[pa_], s3_table.partition_bytes[pb]) + 100
    lake.cache.max_object_fraction = 1.0
    qa, qb = s3_table.queries[a:a + 1], s3_table.queries[b:b + 1]
    for _ in range(2):
        t.search(qa, k=5, nprobe=1)
    assert set(cached_parts(lake, t)) == {pa_}
    t.search(qb, k=5, nprobe=1)  # first visit: colder than pa_, not admitted
    assert set(cached_parts(lake, t)) == {pa_}
    assert lake.cache.stats()["lifetime"]["rejected"] == 1
    for _ in range(2):  # it keeps coming back: now hotter than pa_, promoted, pa_ demoted
        t.search(qb, k=5, nprobe=1)
    assert set(cached_parts(lake, t)) == {pb}
    t.search(qb, k=5, nprobe=1)
    assert t.last_search_stats["io"]["gets"] == 0


def test_warm_pin_evict_clear(s3_table, tmp_path):
    lake, t = s3_table.connect(tmp_path / "c", int(s3_table.data_bytes * 0.5))
    probes = sorted(set(t.snapshot().model.probe(s3_table.queries[:3], NPROBE).ravel().tolist()))
    w = lake.cache.warm("vecs", probes)
    assert w["partitions"] == len(probes) and w["files_downloaded"] >= len(probes)
    assert w["bytes_downloaded"] == sum(s3_table.partition_bytes[p] for p in probes)
    s3_table.search(t, s3_table.queries[:3])
    assert t.last_search_stats["io"]["gets"] == 0  # warmed before the "job": nothing from the store
    again = lake.cache.warm(t, probes)
    assert again["files_downloaded"] == 0 and again["files_already_cached"] == w["files_downloaded"]
    # pin two partitions, then flood the cache with warms of everything else: the pinned stay
    pinned = probes[:2]
    lake.cache.pin("vecs", pinned)
    others = [p for p in s3_table.partition_bytes if p not in pinned]
    res = lake.cache.warm("vecs", others)
    assert res["skipped_partitions"]  # they do not all fit
    assert set(pinned) <= set(cached_parts(lake, t))
    assert lake.cache.stats()["used_bytes"] <= lake.cache.budget
    with pytest.raises(CacheError, match="budget"):
        lake.cache.pin("vecs")  # the whole table does not fit
    ev = lake.cache.evict("vecs", pinned)
    assert ev["files"] >= 2 and not set(pinned) & set(cached_parts(lake, t))
    cl = lake.cache.clear()
    assert cl["files"] > 0 and lake.cache.stats()["files"] == 0 and dir_bytes(lake.cache.objects_dir) == 0
    with pytest.raises(lakevec.LakevecError, match="partition 999"):
        lake.cache.warm("vecs", [999])


def test_table_stats_show_tiers_temperatures_and_cost(s3_table, tmp_path):
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    for _ in range(3):
        s3_table.search(t, s3_table.queries[:1])
    st = t.stats()
    parts = {p["partition"]: p for p in st["partitions"]}
    hot = [p for p in parts.values() if p["tier"] == "hot"]
    assert len(hot) == NPROBE
    assert all(p["temperature"] > 2.5 and p["hits"] == 2 and p["misses"] == 1 for p in hot)
    assert all(p["tier"] == "cold" and p["temperature"] == 0 for p in parts.values() if p not in hot)
    assert st["bytes_per_tier"]["nvme_cache"] == sum(p["bytes"] for p in hot)
    assert st["bytes_per_tier"]["object_store"] == s3_table.data_bytes == st["bytes"]
    assert st["rows"] == sum(p["rows"] for p in parts.values())
    assert st["cache"]["hits"] == 2 * NPROBE and st["cache"]["misses"] == NPROBE
    assert st["estimated_cost_usd"] > 0 and st["storage_cost_usd_month"] > 0


# -- integrity ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_cache_file_is_detected_and_repaired(s3_table, tmp_path, damage):
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    s3_table.search(t)
    files = cached_files(lake.cache)
    victim = files[len(files) // 2]
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:
        if damage == "flip":
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0xFF]))
        else:
            f.truncate(size // 3)
    r = s3_table.search(t)
    io = t.last_search_stats["io"]
    assert same_results(r, s3_table.expected)
    assert io["cache_misses"] == 1 and io["gets"] >= 1 and io["bytes_read"] == size  # re-read from the store
    assert lake.cache.stats()["lifetime"]["corrupt"] == 1
    assert os.path.getsize(victim) == size  # repaired in place
    s3_table.search(t)
    assert t.last_search_stats["io"]["gets"] == 0


def test_checksums_are_checked_on_first_use_or_on_every_use(s3_table, tmp_path, monkeypatch):
    from lakevec.cache import nvme
    calls = []
    real = nvme.crc_of_file
    monkeypatch.setattr(nvme, "crc_of_file", lambda p: calls.append(p) or real(p))
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    s3_table.search(t)  # misses: the checksum is computed while downloading
    n = t.last_search_stats["io"]["cache_misses"]
    assert calls == []
    other = lakevec.connect(s3_table.uri, storage_options=s3_table.storage_options, cache_dir=str(tmp_path / "c"))
    t2 = other.open_table("vecs")
    for _ in range(2):  # another process-like cache object: verifies each file once, then trusts its identity
        s3_table.search(t2)
    assert len(calls) == n and t2.last_search_stats["io"]["cache_hits"] == n
    calls.clear()
    other.cache.verify = "always"
    s3_table.search(t2)
    assert len(calls) == n  # every use


def test_a_copy_the_reader_cannot_parse_is_dropped_and_read_again(s3_table, tmp_path, monkeypatch):
    """Damage the checks cannot see (here: they are switched off) surfaces as a read error: the reader
    invalidates the copy and reads the object from the store."""
    lake, t = s3_table.connect(tmp_path / "c", 1 << 30)
    s3_table.search(t)
    files = cached_files(lake.cache)
    for path in files:
        with open(path, "r+b") as f:
            f.seek(-64, os.SEEK_END)
            f.write(b"\0" * 64)  # destroy the Lance footer
    monkeypatch.setattr(lake.cache, "_check", lambda path, ent: "ok")
    r = s3_table.search(t)
    assert same_results(r, s3_table.expected)
    assert lake.cache.stats()["lifetime"]["corrupt"] == len(files)
    assert t.last_search_stats["io"]["gets"] >= len(files)  # every object read again from the store
    assert not cached_files(lake.cache)


def test_deleting_the_cache_folder_while_reading_gives_correct_results(s3_table, tmp_path):
    cdir = tmp_path / "c"
    lake, t = s3_table.connect(cdir, 1 << 30)
    stop = threading.Event()
    deletions = [0]

    def vandal():
        while not stop.is_set():
            shutil.rmtree(cdir, ignore_errors=True)
            deletions[0] += 1
            time.sleep(0.01)

    th = threading.Thread(target=vandal)
    th.start()
    results = []
    try:
        # at least 12 searches, and on until the folder was deleted several times while they ran (however
        # the threads are scheduled on a loaded machine; no assumption on how long a search takes)
        while (len(results) < 12 or deletions[0] <= 5) and len(results) < 500:
            results.append(s3_table.search(t))
    finally:
        stop.set()
        th.join()
    assert deletions[0] > 5
    assert all(same_results(r, s3_table.expected) for r in results)
    # the folder comes back and the cache works again
    s3_table.search(t)
    s3_table.search(t)
    assert t.last_search_stats["io"]["gets"] == 0 and t.last_search_stats["io"]["cache_hits"] > 0
    assert os.path.isfile(cdir / "cache.db")


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_a_full_disk_makes_reads_slower_not_wrong(s3_table, tmp_path, monkeypatch):
    cdir = tmp_path / "small"
    mounted = _mount_tmpfs(cdir, "256k")  # room for the database and a few data files
    try:
        if not mounted:  # no tmpfs here: simulate ENOSPC on every cache write
            from lakevec.cache import nvme
            from lakevec.cache.files import LocalWriteError

            def full(*a, **k):
                raise LocalWriteError(OSError(errno.ENOSPC, "No space left on device", str(cdir)))
            monkeypatch.setattr(nvme, "download", full)
        lake, t = s3_table.connect(cdir, 1 << 30)  # the budget is larger than the disk
        for _ in range(3):
            r = s3_table.search(t)
            assert same_results(r, s3_table.expected)
        st = lake.cache.stats()
        assert lake.cache.errors > 0 or st["lifetime"]["write_errors"] > 0  # it noticed...
        assert t.last_search_stats["io"]["gets"] > 0  # ...and read what did not fit from the store
        if mounted:
            assert st["used_bytes"] <= 256 << 10
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(cdir)], capture_output=True)


def test_no_local_disk_at_all_falls_back_to_lance(s3_table, monkeypatch):
    import lakevec.search.reader as reader

    def no_temp(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp")
    monkeypatch.setattr(reader.tempfile, "mkstemp", no_temp)
    lake, t = s3_table.connect()
    assert same_results(s3_table.search(t), s3_table.expected)


# -- several processes ---------------------------------------------------------------------------------

def test_two_processes_share_one_cache(s3_table, tmp_path):
    cdir = tmp_path / "shared"
    budget = int(s3_table.data_bytes * 0.35)  # small: the processes evict each other's partitions
    qfile = tmp_path / "q.npz"
    exp = s3_table.expected
    np.savez(qfile, queries=s3_table.queries, qidx=exp.column("query_index").to_numpy(),
             ids=exp.column("id").to_numpy(), dist=exp.column("distance").to_numpy())
    args = [sys.executable, str(HERE / "reader_proc.py"), s3_table.uri, json.dumps(s3_table.storage_options),
            str(cdir), str(budget), str(qfile), "40"]
    procs = [subprocess.Popen(args + [str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)  # a guard against hangs, not a speed check
            assert p.returncode == 0, err[-2000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:  # leave no reader behind when the test fails
            if p.poll() is None:
                p.kill()
                p.communicate()
    for o in outs:
        assert o["mismatches"] == 0 and o["searches"] == 40
        assert o["cache_hits"] > 0
    cache = lakevec.cache.NvmeCache(str(cdir), budget)
    st = cache.stats()
    assert st["used_bytes"] <= budget
    assert st["lifetime"]["hits"] == sum(o["cache_hits"] for o in outs)
    assert st["lifetime"]["evicted_files"] > 0  # the processes displaced each other's partitions
    with cache.db.read() as c:  # every recorded file is whole and matches its checksum
        for rel, size, crc in c.execute("SELECT file, size, crc FROM entries"):
            from lakevec.cache.files import crc_of_file
            assert crc_of_file(os.path.join(cache.objects_dir, rel)) == (size, crc)


# -- the server's view ---------------------------------------------------------------------------------

def test_request_counters_match_the_servers_view(s3_server, s3_table, tmp_path):
    with CountingProxy(s3_server.endpoint, keep_log=True) as proxy:
        opts = dict(s3_table.storage_options, aws_endpoint=proxy.endpoint)
        lake, t = s3_table.connect(tmp_path / "c", 1 << 30, storage_options=opts)

        def data_requests():
            log = proxy.log()
            proxy.reset()
            data = [e for e in log if "/data.lance/data/" in e[2]]
            return {"gets": sum(1 for e in data if e[0] in ("GET", "HEAD")),
                    "bytes": sum(e[4] for e in data), "all": len(log)}

        data_requests()
        r = s3_table.search(t)
        cold, io = data_requests(), t.last_search_stats["io"]
        assert same_results(r, s3_table.expected)
        assert cold["gets"] == io["gets"] > 0  # every HEAD and GET of a data file, no more, no less
        assert cold["bytes"] == io["bytes_read"]
        s3_table.search(t)
        warm, io = data_requests(), t.last_search_stats["io"]
        assert warm["gets"] == 0 and warm["bytes"] == 0 and io["gets"] == 0
        w = lake.cache.warm("vecs")
        seen = data_requests()
        assert seen["gets"] == 2 * w["files_downloaded"] > 0  # one HEAD and one GET per file
        assert seen["bytes"] == w["bytes_downloaded"]
