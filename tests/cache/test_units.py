"""Cache units are (table, index id, partition): the statistics and pins of one index never apply to the next
one, which reuses the partition numbers for other clusters. The cache sits under tables: it never imports
or opens one itself. A cache folder lost in the middle of a read makes the read slower, never failing."""
from __future__ import annotations

import ast
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

import lakevec
from lakevec.cache import NvmeCache

DIM, ROWS, PARTS = 16, 3000, 10
CACHE_PKG = Path(lakevec.__file__).parent / "cache"


def _data(seed: int):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((PARTS, DIM)).astype(np.float32) * 5
    return (centers[rng.integers(0, PARTS, ROWS)] + rng.standard_normal((ROWS, DIM))).astype(np.float32)


@pytest.fixture
def s3_lake(s3_server, tmp_path):
    uri = s3_server.uri("lakevec", f"units-{uuid.uuid4().hex[:8]}")
    lake = lakevec.connect(uri, storage_options=dict(s3_server.storage_options), cache_dir=str(tmp_path / "c"),
                           cache_bytes=1 << 30)
    t = lake.create_table("t", dim=DIM)
    x = _data(1)
    t.add({"id": np.arange(ROWS), "vector": x})
    t.build_index(num_partitions=PARTS)
    return lake, t, x


def test_pins_and_temperatures_of_an_old_index_do_not_apply_to_the_new_one(s3_lake):
    lake, t, x = s3_lake
    old = t.snapshot().index.index_id
    lake.cache.pin(t, [0, 1, 2])
    for _ in range(4):
        t.search(x[:20], k=5, nprobe=3)
    st = {p["partition"]: p for p in t.stats()["partitions"]}
    assert all(st[p]["pinned"] for p in (0, 1, 2))
    warm_before = {p for p, s in st.items() if s["temperature"] > 1}
    assert warm_before and {0, 1, 2} <= {p for p, s in st.items() if s["temperature"] > 0}

    t.build_index(num_partitions=PARTS)  # same partition numbers, new clusters, new data files
    new = t.snapshot().index.index_id
    assert new != old
    st = {p["partition"]: p for p in t.stats()["partitions"]}
    assert set(st) == set(range(PARTS))
    assert not any(s["pinned"] for s in st.values()), "pins of the old index reported for the new one"
    assert all(s["temperature"] == 0 and s["hits"] == 0 and s["misses"] == 0 for s in st.values())
    assert all(s["tier"] == "cold" for s in st.values())
    assert lake.cache.partition_stats(t.loc.uri, new) == {}
    old_units = lake.cache.partition_stats(t.loc.uri, old)  # still there, under their own index
    assert all(old_units[p]["pinned"] for p in (0, 1, 2))

    # the new index's units fill on their own; warming the table releases the stale pins
    t.search(x[:1], k=5, nprobe=2)
    st = {p["partition"]: p for p in t.stats()["partitions"]}
    assert sum(1 for s in st.values() if s["misses"] > 0) == 2
    w = lake.cache.warm(t, [5])
    assert w["released_stale_pins"] == 3
    assert not any(s["pinned"] for s in lake.cache.partition_stats(t.loc.uri, old).values())
    assert lake.cache.stats()["pinned_partitions"] == 0
    lake.cache.pin("t", [4])  # by name: resolved by the lake's open_table, against the new index
    assert lake.cache.partition_stats(t.loc.uri, new)[4]["pinned"]
    assert lake.cache.unpin("t", [4]) == {"partitions": 1}
    ev = lake.cache.evict("t", [5])
    assert ev["files"] >= 1 and 5 not in lake.cache.cached_by_partition(t.loc.uri, new)


def test_the_cache_package_never_imports_or_opens_a_table():
    upward = {"lake", "table", "snapshot", "metadata", "ingest", "index", "search", "join", "maintenance", "cli"}
    for path in CACHE_PKG.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                top = (node.module or "").split(".")[0]
                assert top not in upward, f"{path.name} imports ..{node.module}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open_table":
                f = node.func.value
                assert isinstance(f, ast.Name) and f.id == "self", \
                    f"{path.name} opens a table other than through the resolver it was given"


def test_table_names_need_the_resolver_the_lake_hands_over(tmp_path):
    cache = NvmeCache(str(tmp_path / "c"), 1 << 20)  # made without a lake: no resolver
    with pytest.raises(lakevec.InvalidArgumentError, match="table name of this lake"):
        cache.warm("t")
    opened = []
    cache = NvmeCache(str(tmp_path / "c"), 1 << 20, root="s3://b/lake", open_table=lambda n: opened.append(n))
    with pytest.raises(Exception):
        cache.warm("t")  # the resolver was asked (and returned nothing usable)
    assert opened == ["t"]
    assert cache.evict("t") == {"files": 0, "bytes": 0}  # a whole table needs no resolver: its root URI
    with pytest.raises(lakevec.InvalidArgumentError, match="invalid table name"):
        cache.evict("bad name!")
    with pytest.raises(lakevec.InvalidArgumentError, match="not the URI"):
        cache.evict("s3://b/lake/t", [1])


def test_an_old_cache_database_is_emptied_not_misread(tmp_path):
    import sqlite3
    d = tmp_path / "c"
    d.mkdir()
    con = sqlite3.connect(d / "cache.db")
    con.executescript("""
        CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO info VALUES ('schema_version', '1');
        CREATE TABLE entries (key TEXT PRIMARY KEY, file TEXT NOT NULL, size INTEGER NOT NULL, crc INTEGER,
            state INTEGER NOT NULL DEFAULT 0, tbl TEXT NOT NULL, part INTEGER NOT NULL, kind TEXT NOT NULL DEFAULT 'data',
            admitted_at REAL NOT NULL, owner TEXT);
        INSERT INTO entries VALUES ('s3://b/l/t/data.lance/data/x.lance', 'ab/x.lance', 3, 1, 1, 's3://b/l/t', 2, 'data', 0, '1');
        CREATE TABLE parts (tbl TEXT NOT NULL, part INTEGER NOT NULL, lscore REAL NOT NULL, last_access REAL NOT NULL,
            accesses INTEGER NOT NULL DEFAULT 0, hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
            bytes_cache INTEGER NOT NULL DEFAULT 0, bytes_store INTEGER NOT NULL DEFAULT 0,
            pinned INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, part));
        INSERT INTO parts VALUES ('s3://b/l/t', 2, 5.0, 0, 3, 2, 1, 0, 0, 1);
    """)
    con.commit()
    con.close()
    (d / "objects" / "ab").mkdir(parents=True)
    (d / "objects" / "ab" / "x.lance").write_bytes(b"abc")
    cache = NvmeCache(str(d), 1 << 20)
    st = cache.stats()
    assert st["files"] == 0 and st["pinned_partitions"] == 0
    assert not (d / "objects" / "ab" / "x.lance").exists()  # its file became an orphan, swept
    assert cache.partition_stats("s3://b/l/t") == {}


# -- a lost cache folder ------------------------------------------------------------------------------

def _vanishing(cache, what: str):
    """Wrap ``cache.fetch`` so that the file it hands over is gone (or the whole folder) before the reader
    opens it: the worst moment for a cache folder to be deleted."""
    real = cache.fetch
    calls = []

    def fetch(*args, **kwargs):
        got = real(*args, **kwargs)
        if got is not None:
            calls.append(got)
            if what == "folder":
                shutil.rmtree(cache.dir, ignore_errors=True)
            else:
                os.unlink(got[0])
        return got

    cache.fetch = fetch
    return calls


@pytest.mark.parametrize("what", ["temp file", "cached file", "folder"])
def test_a_cache_file_lost_before_it_is_read_makes_the_read_slower_not_failing(s3_lake, what):
    lake, t, x = s3_lake
    q = x[:8]
    expected = t.search(q, k=10, nprobe=4)  # also fills the cache
    if what == "temp file":
        lake.cache.clear()
        lake.cache.budget = 1  # nothing is admitted: every miss is handed over as a temporary file in tmp/
    calls = _vanishing(lake.cache, what)
    got = t.search(q, k=10, nprobe=4)
    assert calls and got.equals(expected)
    io = t.last_search_stats["io"]
    assert io["gets"] > 0  # read again from the store
    if what == "temp file":
        assert all(os.path.dirname(p) == lake.cache.tmp_dir for p, temp in calls) and all(temp for _, temp in calls)
    elif what == "cached file":
        assert not any(temp for _, temp in calls)
