"""The in-process LRU of decoded partitions: budget, eviction order, and identical search results."""
import numpy as np
import pyarrow as pa

import lakevec
from lakevec.search.memcache import BlockCache


def _tbl(n):
    return pa.table({"x": np.arange(n, dtype=np.int64)})  # n * 8 bytes


def test_lru_keeps_the_byte_budget_and_evicts_least_recently_used():
    c = BlockCache(4 * 800)
    for i in range(4):
        c.put(i, _tbl(100))  # 800 bytes each: exactly the budget
    assert c.get(0) is not None  # 0 becomes most recently used
    c.put(4, _tbl(100))  # over budget: evicts 1, the least recently used
    assert c.get(1) is None
    assert c.get(0) is not None and c.get(4) is not None
    assert c.stats()["used_bytes"] <= 4 * 800


def test_too_big_entries_and_a_zero_budget_are_not_cached():
    c = BlockCache(1000)
    c.put("big", _tbl(1000))  # 8000 bytes > budget / 4
    assert c.get("big") is None
    off = BlockCache(0)
    off.put("a", _tbl(1))
    assert off.get("a") is None


def test_repeated_search_is_served_from_memory_with_identical_results(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    lake = lakevec.connect(str(tmp_path / "lake"), memory_cache_bytes=64 << 20)
    t = lake.create_table("t", dim=16)
    t.add({"id": np.arange(len(x)), "vector": x})
    t.build_index(num_partitions=20)
    q = rng.standard_normal((50, 16)).astype(np.float32)
    first = t.search(q, k=5, nprobe=5)
    hits_before = lake.memory_cache.stats()["hits"]
    second = t.search(q, k=5, nprobe=5)
    assert lake.memory_cache.stats()["hits"] > hits_before
    assert first.equals(second)
    # and the answer is the exact one when every partition is probed
    full = t.search(q, k=5, nprobe=20)
    d = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    exact = np.argsort(d, axis=1)[:, :5]
    assert np.array_equal(full.column("id").to_numpy().reshape(50, 5), exact)


def test_memory_cache_is_off_by_default_with_an_nvme_cache(tmp_path):
    lake = lakevec.connect(str(tmp_path / "lake"), cache_dir=str(tmp_path / "cache"), cache_bytes=1 << 20)
    assert lake.memory_cache.max_bytes == 0
