"""What a failing command prints: exactly one ``lakevec: error:`` line, last on stderr, in the CLI's own terms.

- usage errors: one line with a pointer to ``--help``, no usage block, no doubled ``lakevec: lakevec`` prefix;
- a failure after finished steps: no "failed" progress line, the error line is the last line (with
  ``--quiet`` the only one);
- library messages written for Python (``on_bad_rows='skip'``, ``storage_options={...}``) are shown as
  options (``--on-bad-rows skip``, ``--storage-option KEY=VALUE``); Rust source paths are dropped.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli_helpers import run_cli  # tests/cli is on sys.path (its conftest)

import lakevec
from lakevec.cli.messages import for_cli

DIM = 8


def the_error(err: str) -> str:
    """Assert the error contract on stderr and return the error line."""
    lines = err.rstrip("\n").splitlines()
    assert lines, "nothing on stderr"
    errors = [line for line in lines if "error:" in line]
    assert errors == [lines[-1]], err  # one error line, and it is the last line
    assert lines[-1].startswith("lakevec: error: ") and not lines[-1].startswith("lakevec: error: lakevec")
    assert not any("failed in" in line or line.startswith("usage:") for line in lines), err
    return lines[-1]


def bad_parquet(path: Path, n: int = 50, nan_rows=(7,)) -> Path:
    x = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
    x[list(nan_rows), 0] = np.nan
    pq.write_table(pa.table({"id": np.arange(n), "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM)}),
                   path)
    return path


def test_usage_errors_are_one_line_pointing_to_help(capsys, tmp_path):
    code, out, err = run_cli(capsys, "index")
    assert code == 2 and out == ""
    assert the_error(err) == ("lakevec: error: index: the following arguments are required: table "
                              "(see 'lakevec index --help')")
    assert len(err.splitlines()) == 1
    code, _, err = run_cli(capsys, "tabels")
    assert code == 2 and "invalid choice: 'tabels'" in the_error(err) and "see 'lakevec --help'" in err
    assert len(err.splitlines()) == 1
    code, _, err = run_cli(capsys)
    assert code == 2 and "no command given" in the_error(err) and "tables" in err
    assert len(err.splitlines()) == 1
    code, out, err = run_cli(capsys, "--json", "search", "t", "--lake", tmp_path, "-k", "x")
    assert code == 2 and len(err.splitlines()) == 1
    assert json.loads(out)["error"]["message"].startswith("search: argument -k: invalid int value: 'x'")


def test_a_failure_after_finished_steps_ends_with_the_error_line(capsys, tmp_path):
    lake = str(tmp_path / "lake")
    src = bad_parquet(tmp_path / "bad.parquet", nan_rows=range(3, 13))
    code, _, err = run_cli(capsys, "ingest", "t", src, "--lake", lake, "--dim", DIM)
    assert code == 1
    line = the_error(err)
    # only the step that finished has a line; the failed one ("ingesting into 't'") prints none
    assert err.splitlines()[0].startswith("lakevec: resolving sources: done in ")
    assert not any("ingesting into" in x for x in err.splitlines()), err
    # the message: all bad rows counted, one reason said once, and the CLI's spelling of the remedy
    assert "10 bad row(s)" in line and "row 3, 4, 5 and 7 more (vector): vector contains NaN or Inf" in line
    assert "--on-bad-rows skip or quarantine" in line and "on_bad_rows" not in line
    code, _, err = run_cli(capsys, "--quiet", "ingest", "t", src, "--lake", lake, "--dim", DIM)
    assert code == 1 and len(err.splitlines()) == 1 and the_error(err)
    assert lakevec.connect(lake).open_table("t").count_rows() == 0


def test_filter_errors_carry_no_rust_source_paths(capsys, tmp_path):
    lake = str(tmp_path / "lake")
    t = lakevec.connect(lake).create_table("t", dim=DIM)
    t.add({"id": np.arange(100), "vector": np.ones((100, DIM), np.float32) + np.arange(100)[:, None]})
    with pytest.raises(lakevec.InvalidArgumentError) as ei:  # the library's text names Lance's source file
        t.search(np.ones(DIM, np.float32), filter="id >")
    code, _, err = run_cli(capsys, "search", "t", "--lake", lake, "--random", "2", "--filter", "id >")
    assert code == 1
    line = the_error(err)
    assert "invalid filter 'id >'" in line and ".rs:" not in line and "/home/" not in line
    if ".rs:" in str(ei.value):
        assert len(line) < len("lakevec: error: " + str(ei.value))


def test_missing_s3_credentials_are_explained_with_cli_options(capsys):
    code, _, err = run_cli(capsys, "--lake", "s3://bucket/lake", "tables")
    assert code == 1
    line = the_error(err)
    assert "no S3 credentials" in line and "--storage-option aws_access_key_id=..." in line
    assert "--storage-option aws_use_default_chain=true" in line and "storage_options" not in line


def test_json_error_object_and_exit_code(capsys, tmp_path):
    lakevec.connect(str(tmp_path / "lake"))
    code, out, err = run_cli(capsys, "--json", "describe", "nope", "--lake", tmp_path / "lake")
    assert code == 1
    e = json.loads(out)["error"]
    assert e["type"] == "TableNotFoundError" and e["exit_code"] == 1 and "nope" in e["message"]
    assert the_error(err) == f"lakevec: error: {e['message']}"


def test_cosine_self_matches_print_zero_not_minus_zero(capsys, tmp_path):
    lake = str(tmp_path / "lake")
    x = np.random.default_rng(1).standard_normal((500, 32)).astype(np.float32)
    t = lakevec.connect(lake).create_table("c", dim=32, metric="cosine")
    t.add({"id": np.arange(500), "vector": x})
    code, out, err = run_cli(capsys, "search", "c", "--lake", lake, "--random", "50", "-k", "1", "--show", "50")
    assert code == 0, err
    import re
    rows = out.split("first 50 rows:", 1)[1].splitlines()[2:]
    assert len(rows) == 50 and all(r.split()[2] == "0" for r in rows)  # query_index, id, distance, rank
    assert not re.search(r"(?<![\w.])-0(\.0*)?(?![\d.])", out)
    code, out, _ = run_cli(capsys, "--json", "search", "c", "--lake", lake, "--random", "50", "-k", "1",
                           "--show", "50")
    dists = [r["distance"] for r in json.loads(out)["first_rows"]]
    assert all(d == 0.0 and str(d) == "0.0" for d in dists)


@pytest.mark.parametrize("text, expected", [
    ("3 bad row(s) (use on_bad_rows='skip' or 'quarantine' to ingest the good rows)",
     "3 bad row(s) (use --on-bad-rows skip or quarantine to ingest the good rows)"),
    ("pass storage_options={'aws_access_key_id': ..., 'aws_secret_access_key': ...} or set AWS_*",
     "pass --storage-option aws_access_key_id=... --storage-option aws_secret_access_key=... or set AWS_*"),
    ("(or aws_use_default_chain='true' for instance profiles)",
     "(or --storage-option aws_use_default_chain=true for instance profiles)"),
    ("bad filter: Expected: an expression, found: EOF, /home/runner/work/lance/lance/rust/lance-datafusion/src/sql.rs:109:22",
     "bad filter: Expected: an expression, found: EOF"),
    ("table 't' has dim=16, but 17 was given; filter \"lang = 'en'\"",
     "table 't' has dim=16, but 17 was given; filter \"lang = 'en'\""),  # descriptions are left alone
    ("first line\n  second line\n", "first line; second line"),
])
def test_messages_for_the_command_line(text, expected):
    assert for_cli(text) == expected


def test_a_real_process_prints_one_line_on_a_usage_error():
    p = subprocess.run([sys.executable, "-m", "lakevec.cli.main", "versions"], capture_output=True, text=True,
                       timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == ["lakevec: error: versions: the following arguments are required: table "
                                     "(see 'lakevec versions --help')"]
