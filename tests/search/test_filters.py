"""Search filters: exactly one SQL expression (``check_filter``), clean errors, correct results on both
storages, and a pre-filter that reads the filter columns of the probed partitions only."""
from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest
from core_helpers import brute_force, hermetic_aws, result_matrix  # noqa: F401

import lakevec
from lakevec.search.filters import check_filter

pytestmark = pytest.mark.usefixtures("hermetic_aws")

DIM = 8
SCHEMA = pa.schema([("id", pa.int64()), ("tag", pa.int64()), ("note", pa.string())])

NOT_ONE_EXPRESSION = [
    "id = 1; DELETE FROM t",
    "id < 10; this is not sql",
    "id < 10;",
    "id < 10 this is not sql",
    "id < 3 LIMIT 1",
    "id < 3 ORDER BY id",
    "(id < 3) (tag = 1)",
    "id < 10) OR (1=1",
    "(id < 10",
    "note = 'open",
    "id < 3 /* unterminated",
]
ONE_EXPRESSION = [
    ("note = 'a;b'", lambda i, tag, note: note == "a;b"),
    ("note = 'it''s; fine'", lambda i, tag, note: note == "it's; fine"),
    ("note LIKE '%;%' AND id < 30", lambda i, tag, note: ";" in note and i < 30),
    ("(tag = 1 OR tag = 2) AND (id >= 10)", lambda i, tag, note: tag in (1, 2) and i >= 10),
    ("tag = 3 -- a comment", lambda i, tag, note: tag == 3),
    ('note = "a;b" AND tag = 4', lambda i, tag, note: note == "a;b" and tag == 4),  # "..." is a string to Lance
    ("`tag` IN (0, 5)", lambda i, tag, note: tag in (0, 5)),
]


@pytest.mark.parametrize("flt", NOT_ONE_EXPRESSION)
def test_check_filter_refuses_more_than_one_expression(flt):
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        check_filter(flt, SCHEMA)
    msg = str(ei.value)
    assert "invalid filter" in msg and repr(flt) in msg
    assert ".rs:" not in msg and "/home/runner" not in msg and "SELECT 1 FROM" not in msg, msg


@pytest.mark.parametrize("flt", [None, "", "   ", "\n", 5, b"id = 1"])
def test_check_filter_refuses_empty_and_non_strings(flt):
    with pytest.raises(lakevec.InvalidArgumentError, match="non-empty SQL predicate"):
        check_filter(flt)


@pytest.mark.parametrize("flt", ["no_such_column > 1", "tag = = 3", "tag = 'x'", "tag"])
def test_check_filter_with_a_schema_refuses_what_lance_refuses(flt):
    assert check_filter(flt)  # lexically fine
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        check_filter(flt, SCHEMA)
    assert ".rs:" not in str(ei.value) and repr(flt) in str(ei.value)


def test_check_filter_result_is_what_lance_must_parse_whole(tmp_path):
    ds = lance.write_dataset(pa.table({"id": np.arange(20), "tag": np.arange(20) % 3, "note": ["x"] * 20}),
                             str(tmp_path / "ds"))
    assert ds.count_rows(filter=check_filter("id < 10")) == 10
    assert ds.count_rows(filter=check_filter("id < 10 -- trailing comment")) == 10
    # what Lance does without the check: trailing text ignored
    assert ds.count_rows(filter="id < 10 this is not sql") == 10


def _table(lake, n=600, parts=None):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    notes = [("a;b" if i % 4 == 0 else "it's; fine" if i % 4 == 1 else f"n{i}") for i in range(n)]
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(n), "vector": x, "tag": np.arange(n) % 7, "note": notes})
    if parts:
        t.build_index(num_partitions=parts)
    return t, x, notes


@pytest.mark.parametrize("flt", NOT_ONE_EXPRESSION + ["", "  ", "no_such_column = 1"])
def test_search_refuses_filters_that_are_not_one_expression(lake, flt):
    t, x, _ = _table(lake, 100)
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        t.search(x[:2], k=3, filter=flt)
    assert "filter" in str(ei.value) and ".rs:" not in str(ei.value)


@pytest.mark.parametrize("indexed", [False, True])
def test_filtered_search_equals_brute_force_over_matching_rows(lake, indexed):
    t, x, notes = _table(lake, 600, parts=8 if indexed else None)
    q = x[[3, 50, 400]] + 0.01
    ids = np.arange(len(x))
    for flt, keep in ONE_EXPRESSION:
        match = np.array([keep(int(i), int(i) % 7, notes[i]) for i in ids])
        k = 5
        res = t.search(q, k=k, filter=flt, nprobe=8, columns=["note"])
        idx, dist = brute_force(x[match], q, min(k, int(match.sum())), "l2")
        got, gdist = result_matrix(res, len(q), min(k, int(match.sum())))
        assert np.array_equal(got, ids[match][idx]), flt
        np.testing.assert_allclose(gdist, dist, rtol=1e-4, atol=1e-4)
        assert all(keep(i, i % 7, n) for i, n in zip(res.column("id").to_pylist(), res.column("note").to_pylist()))


def test_filtered_search_reads_the_filter_columns_of_probed_partitions_only(lake):
    n, parts = 6000, 48
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((parts, DIM)).astype(np.float32) * 6
    x = (centers[rng.integers(0, parts, n)] + rng.standard_normal((n, DIM))).astype(np.float32)
    note = [f"{i:06d}-" + "x" * 200 for i in range(n)]  # a wide filter column: 1.2 MB over the table
    t = lake.create_table("t", dim=DIM)
    t.add({"id": np.arange(n), "vector": x, "tag": np.arange(n) % 3, "note": note})
    t.build_index(num_partitions=parts)
    flt = "note LIKE '%0-x%' OR tag = 1"
    match = np.array([("0-x" in s) or (i % 3 == 1) for i, s in enumerate(note)])
    q = x[:1] + 0.01
    lake2 = lakevec.connect(lake.uri, storage_options=lake.loc.options or None, memory_cache_bytes=0)
    t2 = lake2.open_table("t")
    res = t2.search(q, k=10, nprobe=1, filter=flt)
    io = t2.last_search_stats["io"]
    assert t2.last_search_stats["partitions_read"] == 1
    # the whole filter column, read the way the old pre-filter read it (a fresh dataset: no cached metadata)
    ds = lance.dataset(t2.data_uri, storage_options=lake.lance_options)
    ds.scanner(filter=flt, columns=[], with_row_address=True).to_table()
    whole_filter = ds.io_stats_incremental().read_bytes
    snap = t2.snapshot()
    one_partition = max(snap.partition_bytes(p) for p in snap.by_partition)
    assert whole_filter > 1_000_000
    assert io["bytes_read"] < 4 * one_partition + 64_000 < whole_filter / 4, (io, whole_filter, one_partition)
    # and the answer is right: the k nearest matching rows of the probed partition (brute force)
    probed = int(snap.model.probe(q, 1)[0, 0])
    in_part = ds.to_table(columns=["id"], filter=f"_partition = {probed}").column("id").to_numpy()
    sel = np.sort(in_part[match[in_part]])
    assert len(sel) >= 10
    idx, dist = brute_force(x[sel], q, 10, "l2")
    got, gdist = result_matrix(res, 1, 10)
    assert got[0].tolist() == sel[idx[0]].tolist()
    np.testing.assert_allclose(gdist, dist, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("bad", ["id = 1; DELETE FROM t", "id < 10) OR (1 = 1", "id < 10 this is not sql"])
def test_count_rows_and_to_arrow_refuse_what_search_refuses(lake, bad):
    import numpy as np
    t = lake.create_table("cf", dim=4)
    t.add({"id": np.arange(20), "vector": np.ones((20, 4), np.float32)})
    with pytest.raises(lakevec.InvalidArgumentError):
        t.count_rows(filter=bad)
    with pytest.raises(lakevec.InvalidArgumentError):
        t.to_arrow(filter=bad)
    assert t.count_rows(filter="id < 5") == 5 and t.to_arrow(filter="id >= 18").num_rows == 2
