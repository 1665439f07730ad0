"""jobs/ entry points (spark-submit, ray job submit, plain python) and the `lakevec compact|vacuum` commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakevec
from lakevec.jobs import main as job_main

REPO = Path(__file__).resolve().parents[2]
DIM = 8


def _sources(folder: Path, files=3, rows=400) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(files):
        ids = np.arange(k * rows, (k + 1) * rows)
        vec = rng.standard_normal((rows, DIM)).astype(np.float32)
        pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), DIM)}),
                       folder / f"part-{k}.parquet")
    return str(folder)


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_ingest_and_build_jobs_in_process(dist_engine, tmp_path, capsys):
    src = _sources(tmp_path / "src")
    lake_uri = str(tmp_path / "lake")
    args = ["--lake", lake_uri, "--table", "docs", "--dim", str(DIM), "--task-mb", "0.02", "-q", src]
    assert job_main(dist_engine, "ingest", args) == 0
    s = _last_json(capsys.readouterr().out)
    assert s["ingest"]["rows_added"] == 1200 and s["rows"] == 1200 and not s["ingest"]["skipped"]
    # a re-run of the same sources commits nothing
    assert job_main(dist_engine, "ingest", args) == 0
    s = _last_json(capsys.readouterr().out)
    assert s["ingest"]["skipped"] and s["ingest"]["rows_added"] == 0 and s["rows"] == 1200
    assert job_main(dist_engine, "build", ["--lake", lake_uri, "--table", "docs", "--num-partitions", "4",
                                           "--task-mb", "0.01", "-q"]) == 0
    s = _last_json(capsys.readouterr().out)
    assert s["job"] == f"{dist_engine}_build_index" and s["index"]["num_partitions"] == 4
    assert s["index"]["tasks"] >= 2
    t = lakevec.connect(lake_uri).open_table("docs")
    assert t.index_info()["num_partitions"] == 4 and t.count_rows() == 1200


def test_job_failures_exit_non_zero_with_one_line(dist_engine, tmp_path, capsys):
    lake_uri = str(tmp_path / "lake")
    lakevec.connect(lake_uri)
    # missing table (and no --dim to create it)
    assert job_main(dist_engine, "build", ["--lake", lake_uri, "--table", "nope", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nope" in err[-1]
    # bad rows: the ValidationError in one line
    bad = tmp_path / "bad"
    bad.mkdir()
    vec = np.ones((10, DIM), np.float32)
    vec[3, 1] = np.nan
    pq.write_table(pa.table({"id": np.arange(10), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(vec.ravel()), DIM)}), bad / "x.parquet")
    assert job_main(dist_engine, "ingest", ["--lake", lake_uri, "--table", "t", "--dim", str(DIM), "-q",
                                            str(bad)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: 1 bad row(s) in ") and "row 3 (vector): vector contains NaN or Inf" in last


def test_job_scripts_show_help_without_starting_an_engine():
    for name in ("spark_ingest", "spark_build_index", "ray_ingest", "ray_build_index"):
        p = subprocess.run([sys.executable, str(REPO / "jobs" / f"{name}.py"), "--help"], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "--lake" in p.stdout and "--table" in p.stdout
    p = subprocess.run([sys.executable, str(REPO / "jobs" / "ray_ingest.py"), "--table", "x"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "--lake" in p.stderr  # argparse: usage error


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_ingest_job_on_s3(s3_server, tmp_path):
    """The real thing: spark-submit (its own JVM, local[2]) ingesting Parquet files from S3 into an S3 lake."""
    spark_submit = Path(sys.executable).parent / "spark-submit"
    if not spark_submit.exists():
        pytest.skip("spark-submit not installed next to this Python")
    from lakevec.store.location import parse_location
    from lakevec.store.objects import ObjectStore
    src_local = _sources(tmp_path / "src")
    prefix = s3_server.uri("lakevec", f"jobs-{os.getpid()}-{tmp_path.name}")
    store = ObjectStore(parse_location(prefix, s3_server.storage_options))
    for f in sorted(Path(src_local).iterdir()):
        store.write_bytes(f"{prefix}/in/{f.name}", f.read_bytes())
    env = dict(os.environ, **s3_server.env, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    cmd = [str(spark_submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
           str(REPO / "jobs" / "spark_ingest.py"), "--lake", f"{prefix}/lake", "--table", "docs", "--dim", str(DIM),
           "--build-index", "--num-partitions", "4", "-q", f"{prefix}/in/"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    s = _last_json(p.stdout)
    assert s["ingest"]["rows_added"] == 1200 and s["index"]["num_partitions"] == 4
    t = lakevec.connect(f"{prefix}/lake", storage_options=s3_server.storage_options).open_table("docs")
    assert t.count_rows() == 1200 and t.index_info()["num_partitions"] == 4


def test_cli_compact_and_vacuum(local_lake, capsys):
    from lakevec.cli.main import main as cli
    t = local_lake.create_table("t", dim=DIM)
    for k in range(4):
        t.add({"id": np.arange(k * 10, (k + 1) * 10), "vector": np.ones((10, DIM), np.float32)})
    assert cli(["--json", "compact", "--lake", local_lake.uri, "t"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["committed"] and r["fragments_before"] == 4 and r["fragments_after"] == 1
    assert cli(["vacuum", "--lake", local_lake.uri, "t", "--older-than", "0", "--json"]) == 1
    assert "force" in capsys.readouterr().err  # below the minimum retention without --force
    assert cli(["vacuum", "--lake", local_lake.uri, "t", "--older-than", "0", "--dry-run", "--force", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert cli(["vacuum", "--lake", local_lake.uri, "t", "--older-than", "0", "--force", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["versions_removed"] == 5 and r["data_files_removed"] == 4  # create, 4 appends (compact: kept)
    assert {k: v for k, v in dry.items() if k not in ("dry_run", "seconds")} == \
        {k: v for k, v in r.items() if k not in ("dry_run", "seconds")}  # the dry run said exactly this
    assert cli(["vacuum", "--lake", local_lake.uri, "t", "--older-than", "7d"]) == 0
    assert "removed 0 old version(s)" in capsys.readouterr().out
    assert cli(["vacuum", "--lake", local_lake.uri, "t", "--older-than", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err
    assert cli(["compact", "--lake", local_lake.uri, "missing"]) == 1
    assert lakevec.connect(local_lake.uri).open_table("t").count_rows() == 40
