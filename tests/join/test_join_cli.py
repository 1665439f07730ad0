"""``lakevec join`` / ``lakevec dedup`` and the jobs/*_join.py, jobs/*_dedup.py entry points."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from join_helpers import fsl, make_table, pair_set, vectors

import lakevec
from lakevec.cli import main as cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def cli_lake(local_lake, tmp_path):
    base = vectors(400, seed=71)
    x = np.concatenate([base, [base[0]] * 14, [base[5]] * 2])
    text = np.array([f"gloss {i}" for i in range(400)] + ["gloss 0"] * 14 + ["gloss 5"] * 2, dtype=object)
    make_table(local_lake, "docs", x, nlist=4, extra={"text": text})
    left = tmp_path / "left.parquet"
    pq.write_table(pa.table({"key": np.arange(30) + 9000, "emb": fsl(vectors(30, seed=72))}), left)
    return local_lake, str(left)


def _cli(argv, capsys, with_dedup=False, monkeypatch=None):
    if with_dedup and ("dedup", "dedup_cmd") not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + (("dedup", "dedup_cmd"),))
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_join_command_writes_once_and_reports(cli_lake, capsys, tmp_path):
    lake, left = cli_lake
    dest = str(tmp_path / "pairs")
    argv = ["--lake", lake.uri, "--json", "join", left, "docs", "-k", "3", "--id-column", "key",
            "--vector-column", "emb", "--columns", "text", "--output", dest]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["pairs"] == 90 and r["output"] == dest and not r["skipped"]
    rep = r["report"]
    for field in ("rows_left", "pairs", "partitions", "right_bytes", "shuffle", "estimates", "io", "seconds",
                  "recall", "estimated_cost_usd", "plan"):
        assert field in rep, field
    assert rep["rows_left"] == 30 and rep["recall"]["sample_rows"] == 30
    assert set(rep["estimates"]) == {"shuffle", "grouped"}
    got = lakevec.join.read_output(dest)
    assert got.column_names == ["left_id", "right_id", "distance", "rank", "right_text"]
    code, out, _ = _cli(argv, capsys)  # re-run: nothing committed
    assert code == 0 and json.loads(out)["skipped"]
    # readable output: the report and the first pairs of a self-join dedup
    code, out, _ = _cli(["--lake", lake.uri, "join", "docs", "docs", "-k", "2", "--dedup", "--columns", "text",
                         "--show", "4"], capsys)
    assert code == 0
    assert "self-join, dedup" in out and "recall@2 estimate" in out and "first 4 pairs:" in out
    assert "each byte read 1.00x" in out and "right_text" in out


def test_join_command_errors(cli_lake, capsys):
    lake, left = cli_lake
    code, _, err = _cli(["--lake", lake.uri, "join", left, "docs", "-k", "-1"], capsys)
    assert code == 1 and "lakevec: error: -k must be" in err
    code, _, err = _cli(["--lake", lake.uri, "join", left, "docs"], capsys)
    assert code == 1 and "no id column 'id'" in err and err.count("error:") == 1
    code, _, err = _cli(["--lake", lake.uri, "join", "nosuch", "docs"], capsys)
    assert code == 1 and "neither a table" in err
    code, _, err = _cli(["--lake", lake.uri, "join", left, "docs", "-k", "0"], capsys)
    assert code == 1 and "needs --radius" in err


def test_dedup_command_shows_groups_with_text(cli_lake, capsys, monkeypatch, tmp_path):
    lake, _ = cli_lake
    code, out, err = _cli(["--lake", lake.uri, "dedup", "docs", "--threshold", "1e-4", "-k", "3", "--show", "2",
                           "--columns", "text"], capsys, with_dedup=True, monkeypatch=monkeypatch)
    assert code == 0, err
    assert "2 groups, 18 rows in groups" in out and "largest group 15" in out
    assert "group 0 (15 rows):" in out and "group 1 (3 rows):" in out and "gloss 5" in out
    dest = str(tmp_path / "groups")
    code, out, _ = _cli(["--lake", lake.uri, "--json", "dedup", "docs", "--threshold", "1e-4", "--output", dest],
                        capsys, with_dedup=True, monkeypatch=monkeypatch)
    r = json.loads(out)
    assert code == 0 and r["summary"]["groups"] == 2 and r["groups"][0]["group_size"] == 15
    assert lakevec.join.read_output(dest).num_rows == 18


def _job(script, args, timeout=600):
    p = subprocess.run([sys.executable, os.path.join(REPO, "jobs", script), *args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.ray
def test_ray_jobs(cli_lake, tmp_path):
    lake, left = cli_lake
    code, out, err = _job("ray_join.py", ["--lake", lake.uri, "--table", "docs", "--left", left, "-k", "3",
                                          "--id-column", "key", "--vector-column", "emb", "--num-cpus", "2",
                                          "--output", str(tmp_path / "p"), "--columns", "text"])
    assert code == 0, err[-3000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["job"] == "ray_join" and r["pairs"] == 90 and r["report"]["engine"] == "ray"
    assert "assigning 30 left rows" in err  # progress on stderr
    ref = lakevec.knn_join(left, lake.open_table("docs"), k=3, id_column="key", vector_column="emb")
    assert pair_set(lakevec.join.read_output(str(tmp_path / "p"))) == pair_set(ref)
    code, out, err = _job("ray_dedup.py", ["--lake", lake.uri, "--table", "docs", "--threshold", "1e-4",
                                           "--num-cpus", "2"])
    assert code == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["summary"]["groups"] == 2
    code, out, err = _job("ray_dedup.py", ["--lake", lake.uri, "--table", "nope", "--threshold", "1"])
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: table 'nope' not found")


@pytest.mark.spark
def test_spark_jobs(cli_lake, tmp_path):
    lake, _ = cli_lake
    code, out, err = _job("spark_dedup.py", ["--lake", lake.uri, "--table", "docs", "--threshold", "1e-4",
                                             "--master", "local[2]", "--output", str(tmp_path / "g")])
    assert code == 0, err[-3000:]
    r = json.loads(out.strip().splitlines()[-1])
    assert r["job"] == "spark_dedup" and r["summary"]["largest_group"] == 15 and r["report"]["engine"] == "spark"
    code, out, err = _job("spark_join.py", ["--lake", lake.uri, "--table", "docs", "--left", "docs", "-k", "0",
                                            "--radius", "-1"])
    assert code == 1 and "radius must be a non-negative number" in err.strip().splitlines()[-1]
