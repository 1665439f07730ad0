"""``lakevec tables``, ``lakevec versions TABLE`` and ``lakevec describe TABLE`` on real lakes (local disk and S3)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import lake_args, run_cli  # tests/cli is on sys.path (its conftest)

import lakevec

DIM = 8


def rows(n, start=0, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return {"id": ids, "vector": rng.standard_normal((n, DIM)).astype(np.float32),
            "lang": np.array(["en", "de"])[ids % 2], "year": (2000 + ids % 20).astype(np.int32)}


@pytest.fixture
def two_tables(lake):
    """``docs`` (indexed, then 100 rows appended into their partitions) and ``empty`` (cosine, no rows)."""
    docs = lake.create_table("docs", dim=DIM)
    docs.add(rows(600))
    docs.build_index(num_partitions=4)
    docs.add(rows(100, start=600, seed=1))
    lake.create_table("empty", dim=4, metric="cosine", id_type="string")
    return lake


def test_tables_lists_rows_versions_and_index(two_tables, storage, capsys):
    la = lake_args(storage)
    code, out, err = run_cli(capsys, "--json", "tables", *la)
    assert code == 0, err
    r = json.loads(out)
    docs = two_tables.open_table("docs")
    by_name = {t["table"]: t for t in r["tables"]}
    assert set(by_name) == {"docs", "empty"}
    assert by_name["docs"] == {"table": "docs", "rows": 700, "version": docs.version, "indexed": True,
                               "partitions": 4, "dim": DIM, "metric": "l2"}
    assert (by_name["empty"]["rows"], by_name["empty"]["indexed"], by_name["empty"]["metric"]) == (0, False, "cosine")
    code, out, err = run_cli(capsys, "tables", *la)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["table", "rows", "version", "indexed", "dim", "metric"]
    assert lines[1].split()[:4] == ["docs", "700", str(docs.version), "yes"] and "(4 partitions)" in lines[1]
    assert lines[2].split()[:4] == ["empty", "0", "1", "no"]
    assert lines[-1] == f"2 table(s) in {two_tables.uri}"


def test_tables_of_an_empty_lake_and_of_no_lake(tmp_path, capsys):
    lakevec.connect(str(tmp_path / "lake"))
    code, out, _ = run_cli(capsys, "tables", "--lake", tmp_path / "lake")
    assert code == 0 and out.strip() == f"no tables in {tmp_path / 'lake'}"
    code, _, err = run_cli(capsys, "tables", "--lake", tmp_path / "nothing")
    assert code == 1 and "no lakevec lake" in err and not (tmp_path / "nothing").exists()


def test_a_damaged_table_is_listed_with_its_error(tmp_path, capsys):
    lake = lakevec.connect(str(tmp_path / "lake"))
    lake.create_table("good", dim=DIM).add(rows(10))
    lake.create_table("bad", dim=DIM)
    (tmp_path / "lake" / "bad" / "_lakevec" / "table.json").write_text("{not json")
    code, out, err = run_cli(capsys, "--json", "tables", "--lake", tmp_path / "lake")
    assert code == 1  # the listing is printed, and the exit code says something is wrong
    by_name = {t["table"]: t for t in json.loads(out)["tables"]}
    assert by_name["good"]["rows"] == 10 and "error" in by_name["bad"] and "rows" not in by_name["bad"]


def test_versions_lists_every_version_oldest_first(two_tables, storage, capsys):
    la = lake_args(storage)
    docs = two_tables.open_table("docs")
    code, out, err = run_cli(capsys, "--json", "versions", "docs", *la)
    assert code == 0, err
    r = json.loads(out)
    assert r["current_version"] == docs.version and r["count"] == len(docs.versions())
    got = [v["version"] for v in r["versions"]]
    assert got == sorted(got) and got[-1] == docs.version and got[0] == 1
    assert all(set(v) == {"version", "timestamp", "operation", "rows"} and v["timestamp"] for v in r["versions"])
    lib = {v["version"]: v for v in docs.versions()}
    for v in r["versions"]:  # what the library knows is shown; what it does not know (yet) is None, not made up
        assert v["operation"] == lib[v["version"]].get("operation") and v["rows"] == lib[v["version"]].get("rows")
    code, out, _ = run_cli(capsys, "versions", "docs", "--last", "2", *la)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (f"table 'docs': {r['count']} version(s), newest 2 shown; current version "
                        f"{docs.version} (*)")
    assert lines[1].split() == ["version", "time", "operation", "rows"]
    assert [x.split()[0] for x in lines[2:]] == [str(docs.version - 1), str(docs.version)]
    assert lines[-1].split()[1] == "*"
    if lib[docs.version].get("rows") is None:
        assert lines[-1].split()[-1] == "-"
    else:
        assert lines[-1].split()[-1] == "700"
    code, _, err = run_cli(capsys, "versions", "docs", "--last", "0", *la)
    assert code == 1 and "--last must be a positive integer" in err


def test_describe_shows_schema_rows_and_the_index_in_force(two_tables, storage, capsys):
    la = lake_args(storage)
    docs = two_tables.open_table("docs")
    info = docs.index_info()
    code, out, err = run_cli(capsys, "--json", "describe", "docs", *la)
    assert code == 0, err
    r = json.loads(out)
    assert (r["dim"], r["metric"], r["id_type"], r["rows"], r["version"]) == (DIM, "l2", "int64", 700, docs.version)
    assert r["fragments"] == len(docs.snapshot().fragments) and r["bytes"] > 0
    assert [(c["name"], c["type"]) for c in r["columns"]] == [("lang", "string"), ("year", "int32")]
    ix = r["index"]
    assert ix["index_id"] == info["index_id"] and ix["num_partitions"] == 4
    assert ix["default_nprobe"] == info["default_nprobe"] and ix["unassigned_rows"] == info["unassigned_rows"] == 0
    curve = dict((int(p), x) for p, x in info["recall_curve"])
    assert ix["calibrated_recall_at_10"] == curve[info["default_nprobe"]]
    assert ix["partition_rows_min"] + ix["partition_rows_max"] <= 600 and ix["built_on_version"] == 2
    code, out, _ = run_cli(capsys, "describe", "docs", *la)
    assert code == 0
    assert f"dim {DIM}, metric l2, id type int64" in out and f"version      {docs.version}: 700 rows" in out
    assert f"default {info['default_nprobe']} (calibrated recall@10" in out
    assert "unassigned   0 rows\n" in out and "lang string, year int32" in out

    # an older version: before the index, fewer rows
    code, out, _ = run_cli(capsys, "--json", "describe", "docs", "--at-version", "2", *la)
    old = json.loads(out)
    assert code == 0 and (old["version"], old["rows"], old["index"]) == (2, 600, None)
    code, out, _ = run_cli(capsys, "describe", "empty", *la)
    assert code == 0 and "index        none" in out and "0 rows" in out and "id type string" in out
