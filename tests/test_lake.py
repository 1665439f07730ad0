"""Behaviour of Lake: connect, the lake marker, create/open/drop tables, table names (local and S3)."""
from __future__ import annotations

import os

import lance
import pytest
from core_helpers import assert_lakevec_error, hermetic_aws, make_rows  # noqa: F401

import lakevec
from lakevec.config import FORMAT_VERSION, LAKE_MARKER

pytestmark = pytest.mark.usefixtures("hermetic_aws")

BAD_NAMES = [
    ("", "empty"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("..", ".."),
    (".", "."),
    ("x" * 129, "128"),
    ("has space", "characters"),
    ("dot.name", "characters"),
    ("ünï", "characters"),
    ("semi;colon", "characters"),
    ("../escape", "path separator"),
]


def _connect(storage):
    return lakevec.connect(storage.uri, storage_options=storage.storage_options)


def test_connect_writes_the_lake_marker(storage):
    lake = _connect(storage)
    marker = lake.store.read_json(lake.loc.join(LAKE_MARKER))
    assert marker["format_version"] == FORMAT_VERSION
    assert lake.table_names() == []
    # connecting again opens the same lake and keeps the marker
    again = _connect(storage)
    assert again.store.read_json(again.loc.join(LAKE_MARKER))["created_at"] == marker["created_at"]
    assert again.uri == lake.uri


def test_create_open_list_drop(storage):
    lake = _connect(storage)
    t = lake.create_table("docs", dim=4, metric="cosine")
    assert (t.meta.dim, t.meta.metric) == (4, "cosine")
    assert t.count_rows() == 0 and t.version >= 1
    lake.create_table("other-1_B", dim=8)
    assert lake.table_names() == ["docs", "other-1_B"]

    # a second connection sees the same tables with the same properties
    lake2 = _connect(storage)
    t2 = lake2.open_table("docs")
    assert (t2.meta.dim, t2.meta.metric, t2.meta.id_type) == (4, "cosine", "int64")

    lake.drop_table("docs")
    assert lake.table_names() == ["other-1_B"]
    assert lake2.table_names() == ["other-1_B"]
    with pytest.raises(lakevec.TableNotFoundError) as ei:
        lake.open_table("docs")
    assert_lakevec_error(ei, "docs", "not found")
    # the name can be reused after a drop, and the new table starts empty
    t3 = lake.create_table("docs", dim=2)
    assert t3.meta.dim == 2 and t3.count_rows() == 0 and lake.open_table("docs").meta.dim == 2


def test_table_is_a_plain_lance_dataset(storage):
    lake = _connect(storage)
    t = lake.create_table("plain", dim=8)
    t.add(make_rows(20))
    ds = lance.dataset(t.data_uri, storage_options=lake.lance_options)
    tbl = ds.to_table()
    assert tbl.num_rows == 20
    assert tbl.column_names[:2] == ["id", "vector"] and "tag" in tbl.column_names
    assert sorted(tbl.column("id").to_pylist()) == list(range(20))


def test_table_names_ignore_folders_that_are_not_tables(storage):
    lake = _connect(storage)
    lake.create_table("real", dim=3)
    # a folder without table metadata (e.g. a half-created table) and a stray object
    lake.store.write_bytes(lake.loc.join("notatable", "junk.bin"), b"x")
    lake.store.write_bytes(lake.loc.join("readme.txt"), b"hello")
    assert lake.table_names() == ["real"]
    with pytest.raises(lakevec.TableNotFoundError):
        lake.open_table("notatable")


@pytest.mark.parametrize("name,why", BAD_NAMES, ids=[repr(n[0])[:20] for n in BAD_NAMES])
def test_bad_table_names(tmp_path, name, why):
    lake = lakevec.connect(str(tmp_path / "lake"))
    for call in (lambda: lake.create_table(name, dim=4), lambda: lake.open_table(name),
                 lambda: lake.drop_table(name)):
        with pytest.raises(lakevec.InvalidNameError) as ei:
            call()
        assert_lakevec_error(ei, "table name", why)
    # nothing was created anywhere (no escape from the lake root either)
    assert sorted(os.listdir(tmp_path)) == ["lake"]
    assert os.listdir(tmp_path / "lake") == [LAKE_MARKER]


@pytest.mark.parametrize("name", [None, 5, b"bytes"])
def test_non_string_table_names(tmp_path, name):
    lake = lakevec.connect(str(tmp_path / "lake"))
    with pytest.raises(lakevec.InvalidNameError, match="must be a string"):
        lake.create_table(name, dim=4)


def test_longest_allowed_name(tmp_path):
    lake = lakevec.connect(str(tmp_path / "lake"))
    name = "a" * 128
    lake.create_table(name, dim=2)
    assert lake.table_names() == [name]


def test_existing_and_missing_tables(storage):
    lake = _connect(storage)
    t = lake.create_table("t", dim=4)
    t.add(make_rows(5, dim=4))
    with pytest.raises(lakevec.TableExistsError) as ei:
        lake.create_table("t", dim=4)
    assert_lakevec_error(ei, "'t'", "already exists")
    assert lake.open_table("t").count_rows() == 5  # the failed create did not touch the data
    again = lake.create_table("t", dim=4, exist_ok=True)
    assert again.count_rows() == 5
    with pytest.raises(lakevec.TableExistsError, match="dim=4"):
        lake.create_table("t", dim=8, exist_ok=True)
    with pytest.raises(lakevec.TableNotFoundError) as ei:
        lake.open_table("nope")
    assert_lakevec_error(ei, "'nope'", "not found")
    assert isinstance(ei.value, KeyError)  # and still a KeyError for dict-like callers
    with pytest.raises(lakevec.TableNotFoundError):
        lake.drop_table("nope")
    lake.drop_table("nope", missing_ok=True)
    assert lake.table_names() == ["t"]


@pytest.mark.parametrize("kw,needle", [
    ({"dim": 0}, "dim"), ({"dim": -3}, "dim"), ({"dim": 2.5}, "dim"), ({"dim": True}, "dim"),
    ({"dim": "8"}, "dim"), ({"dim": 4, "metric": "hamming"}, "metric"),
    ({"dim": 4, "metric": "L2 "}, "metric"), ({"dim": 4, "id_type": "uuid"}, "id_type"),
])
def test_create_table_bad_arguments(tmp_path, kw, needle):
    lake = lakevec.connect(str(tmp_path / "lake"))
    with pytest.raises(lakevec.InvalidArgumentError) as ei:
        lake.create_table("t", **kw)
    assert_lakevec_error(ei, needle)
    assert lake.table_names() == []


def test_non_lake_folder_is_refused(tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "important.txt").write_text("do not touch")
    with pytest.raises(lakevec.NotALakeError) as ei:
        lakevec.connect(str(folder))
    assert_lakevec_error(ei, str(folder), LAKE_MARKER)
    assert sorted(os.listdir(folder)) == ["important.txt"]


def test_marker_from_a_newer_lakevec_is_refused(storage):
    lake = _connect(storage)
    lake.store.write_json(lake.loc.join(LAKE_MARKER), {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(lakevec.NotALakeError) as ei:
        _connect(storage)
    assert_lakevec_error(ei, "format version", LAKE_MARKER)


def test_corrupt_marker_is_a_lakevec_error(tmp_path):
    root = tmp_path / "lake"
    lakevec.connect(str(root))
    (root / LAKE_MARKER).write_text("{not json")
    with pytest.raises(lakevec.LakevecError) as ei:
        lakevec.connect(str(root))
    assert_lakevec_error(ei, LAKE_MARKER)


def test_tables_are_isolated(storage):
    lake = _connect(storage)
    a = lake.create_table("a", dim=4)
    b = lake.create_table("b", dim=4)
    a.add(make_rows(7, dim=4))
    b.add(make_rows(3, dim=4, start=100))
    assert (a.count_rows(), b.count_rows()) == (7, 3)
    lake.drop_table("a")
    assert lake.open_table("b").count_rows() == 3
    assert sorted(lake.open_table("b").to_arrow(columns=["id"]).column("id").to_pylist()) == [100, 101, 102]


def test_names_starting_with_underscore_or_dash_are_listed(storage):
    lake = _connect(storage)
    for n in ("_private", "-dash", "9lives"):
        lake.create_table(n, dim=2)
    assert lake.table_names() == sorted(["_private", "-dash", "9lives"])
    assert lake.open_table("_private").meta.dim == 2


def test_create_table_that_died_before_its_metadata_can_be_retried(storage, monkeypatch):
    from lakevec.metadata import TableFiles
    lake = _connect(storage)

    def crash(self, meta):
        raise KeyboardInterrupt("killed between the data and the metadata")

    with monkeypatch.context() as m:
        m.setattr(TableFiles, "write_table_meta", crash)
        with pytest.raises(KeyboardInterrupt):
            lake.create_table("t", dim=4)
    assert lake.table_names() == []  # half-created: invisible
    t = lake.create_table("t", dim=4, metric="dot")  # and the name is usable again
    t.add(make_rows(3, dim=4))
    assert lake.open_table("t").meta.metric == "dot" and t.count_rows() == 3 and t.version == 2
    # a leftover of another dimension is superseded, not reused
    with monkeypatch.context() as m:
        m.setattr(TableFiles, "write_table_meta", crash)
        with pytest.raises(KeyboardInterrupt):
            lake.create_table("u", dim=4)
    u = lake.create_table("u", dim=6)
    u.add(make_rows(3, dim=6))
    assert u.schema.field("vector").type.list_size == 6 and u.count_rows() == 3


def test_concurrent_create_of_the_same_table(storage, monkeypatch):
    """Two creators race: the second finds the first's empty dataset and must neither fail nor delete it."""
    from lakevec.metadata import TableFiles
    lake = _connect(storage)
    other = _connect(storage)
    real = TableFiles.write_table_meta
    state = {}

    def write_meta_after_rival(self, meta):
        if not state:
            state["busy"] = True
            state["rival"] = other.create_table("t", dim=4, exist_ok=True)  # runs in the window
        return real(self, meta)

    monkeypatch.setattr(TableFiles, "write_table_meta", write_meta_after_rival)
    t = lake.create_table("t", dim=4, exist_ok=True)
    monkeypatch.setattr(TableFiles, "write_table_meta", real)
    state["rival"].add(make_rows(5, dim=4))
    assert t.count_rows() == 5 and lake.table_names() == ["t"]
    assert t.version == 2  # the rival reused the first version: nothing was overwritten


def test_drop_table_removes_the_remains_of_a_failed_create(storage):
    lake = _connect(storage)
    t = lake.create_table("t", dim=4)
    t.add(make_rows(3, dim=4))
    lake.store.delete(t.loc.join("_lakevec", "table.json"))  # metadata lost, data left behind
    assert lake.table_names() == []
    with pytest.raises(lakevec.TableExistsError) as ei:
        lake.create_table("t", dim=4)  # data with rows is never deleted silently
    assert_lakevec_error(ei, "drop_table")
    lake.drop_table("t")
    lake.create_table("t", dim=4)
    assert lake.open_table("t").count_rows() == 0
    lake.drop_table("t")
    with pytest.raises(lakevec.TableNotFoundError):
        lake.drop_table("t")


def test_local_metadata_files_follow_the_umask(tmp_path):
    # lakevec's own objects must be readable by other users of a shared lake, like Lance's files
    old = os.umask(0o022)
    try:
        lake = lakevec.connect(str(tmp_path / "lake"))
        t = lake.create_table("t", dim=2)
        t.add(make_rows(3, dim=2), idempotency_key="k")
    finally:
        os.umask(old)
    root = tmp_path / "lake"
    txn = t.snapshot().state.txn
    for p in (root / LAKE_MARKER, root / "t" / "_lakevec" / "table.json", root / "t" / "_lakevec" / "commits" / f"{txn}.json",
              root / "t" / "_lakevec" / "ids" / f"{txn}.npy"):
        assert (p.stat().st_mode & 0o777) == 0o644, p
    leftovers = [p for p in root.rglob(".tmp-*")]
    assert not leftovers
