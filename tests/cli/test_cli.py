"""The ``lakevec`` command line: in-process (``main(argv)`` -> exit code) and once as a real subprocess.

Covers the contract of DESIGN.md §6: ingest / index / search on local disk and S3, ``--json`` output,
exit codes (0 ok, 1 lakevec error, 2 usage, 3 internal, 130 interrupted) with one line on stderr,
re-running an ingestion commits nothing, ``bench`` dispatch, progress output and ``quickstart``.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli_helpers import lake_args, run_cli  # tests/cli is on sys.path (its conftest)

import lakevec
from lakevec.cli import common, main as cli_main
from lakevec.store.location import parse_location
from lakevec.store.objects import ObjectStore

REPO = Path(__file__).resolve().parents[2]
DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def parquet_bytes(ids, vecs, extra: dict | None = None) -> bytes:
    cols = {"id": pa.array(np.asarray(ids, dtype=np.int64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vecs).ravel()), vecs.shape[1])}
    cols.update(extra or {})
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue().to_pybytes()


def put(storage, uri: str, data: bytes) -> None:
    """Write an object next to the lake (same store and credentials)."""
    ObjectStore(parse_location(uri, storage.storage_options)).write_bytes(uri, data)


def source_files(storage, tmp_path, X, parts: int = 2) -> list[str]:
    """Write X (ids = row numbers, column lang) as ``parts`` Parquet files beside the lake; return their URIs."""
    base = f"{storage.uri}-src" if storage.kind == "s3" else str(tmp_path / "src")
    bounds = np.linspace(0, len(X), parts + 1).astype(int)
    uris = []
    for i in range(parts):
        ids = np.arange(bounds[i], bounds[i + 1])
        lang = pa.array(np.array(["en", "de"])[ids % 2])
        uri = f"{base}/part-{i}.parquet"
        put(storage, uri, parquet_bytes(ids, X[bounds[i]:bounds[i + 1]], {"lang": lang}))
        uris.append(uri)
    return uris


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("lakevec: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- parser, help, exit codes ----------------------------------------------------------------------

def test_help_lists_the_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for cmd in ("ingest", "index", "search", "bench", "quickstart"):
        assert f"\n    {cmd} " in out, cmd
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"lakevec {lakevec.__version__}"


def test_usage_errors_exit_2(capsys, tmp_path):
    code, out, err = run_cli(capsys)
    assert code == 2 and "no command given" in one_error_line(err)
    code, _, err = run_cli(capsys, "search", "t", "--lake", str(tmp_path))  # neither --query-file nor --random
    assert code == 2 and "one of the arguments --query-file --random is required" in one_error_line(err)
    code, _, err = run_cli(capsys, "index", "t")  # no --lake and no $LAKEVEC_LAKE
    assert code == 2 and "no lake given" in one_error_line(err)
    code, _, err = run_cli(capsys, "index", "t", "--lake", str(tmp_path), "--storage-option", "novalue")
    assert code == 2 and "KEY=VALUE" in one_error_line(err)
    code, out, err = run_cli(capsys, "--json", "index", "t", "--lake", str(tmp_path), "--cache-bytes", "lots")
    assert code == 2 and json.loads(out)["error"]["type"] == "UsageError"


def test_lakevec_errors_exit_1_with_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "index", "t", "--lake", str(tmp_path / "nolake"))
    assert code == 1 and "no lakevec lake at" in one_error_line(err)
    assert not (tmp_path / "nolake").exists(), "a command other than ingest --create must not create a lake"
    lakevec.connect(str(tmp_path / "lake"))
    code, out, err = run_cli(capsys, "--json", "--lake", str(tmp_path / "lake"), "search", "missing", "--random", "3")
    assert code == 1 and "table 'missing' not found" in one_error_line(err)
    assert json.loads(out)["error"] == {"type": "TableNotFoundError", "message": one_error_line(err)[16:],
                                        "exit_code": 1}


def test_internal_error_interrupt_and_debug(capsys, tmp_path, monkeypatch):
    from lakevec.cli import index_cmd

    def boom(args):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(index_cmd, "run", boom)
    code, _, err = run_cli(capsys, "index", "t", "--lake", str(tmp_path))
    assert code == 3
    assert one_error_line(err) == ("lakevec: error: internal error: RuntimeError: kaput; second line "
                                   "(run with --debug for the traceback)")
    code, _, err = run_cli(capsys, "--debug", "index", "t", "--lake", str(tmp_path))
    assert code == 3 and "Traceback (most recent call last)" in err and "kaput" in err

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(index_cmd, "run", interrupted)
    code, _, err = run_cli(capsys, "index", "t", "--lake", str(tmp_path))
    assert code == 130 and one_error_line(err) == "lakevec: error: interrupted"


def test_options_before_or_after_the_command(capsys, tmp_path, monkeypatch):
    from lakevec.cli import index_cmd

    seen = []
    monkeypatch.setattr(index_cmd, "run", lambda args: seen.append((args.lake, args.json)) or {"ok": 1})
    assert run_cli(capsys, "--lake", "A", "--json", "index", "t")[0] == 0
    assert run_cli(capsys, "index", "t", "--lake", "B", "--json")[0] == 0
    monkeypatch.setenv("LAKEVEC_LAKE", str(tmp_path))
    assert run_cli(capsys, "index", "t")[0] == 0
    assert seen == [("A", True), ("B", True), (None, False)]
    assert common.lake_uri(type("A", (), {"lake": None})()) == str(tmp_path)  # env fallback


def test_missing_command_modules_are_skipped(monkeypatch):
    monkeypatch.setattr(cli_main, "COMMANDS", (("index", "index_cmd"), ("nope", "nope_cmd")))
    mods = cli_main.load_command_modules()
    assert [m.__name__ for m in mods] == ["lakevec.cli.index_cmd"]
    parser = cli_main.build_parser(mods)
    assert set(parser._subparsers._group_actions[0].choices) == {"index"}


# -- ingest, index, search on local disk and S3 ----------------------------------------------------

def test_ingest_index_search_roundtrip(storage, tmp_path, capsys):
    X = vectors(1200)
    src = source_files(storage, tmp_path, X)
    la = lake_args(storage)

    code, out, err = run_cli(capsys, "--json", "ingest", "docs", *src, "--create", *la)
    assert code == 0, err
    r = json.loads(out)
    assert (r["created"], r["rows_added"], r["rows_rejected"], r["total_rows"]) == (True, 1200, 0, 1200)
    assert r["committed"] and r["key"] and not r["skipped"]
    version = r["version"]
    t = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("docs")
    assert (t.meta.dim, t.meta.metric, t.version) == (DIM, "l2", version)  # dim inferred from the Parquet schema

    # The same sources again: nothing committed, and the summary says so.
    code, out, err = run_cli(capsys, "ingest", "docs", *src, *la)
    assert code == 0, err
    assert "nothing new was committed" in out and f"version {version}" in out
    assert t.version == version and t.count_rows() == 1200

    code, out, err = run_cli(capsys, "--json", "index", "docs", "--num-partitions", "6", *la)
    assert code == 0, err
    ix = json.loads(out)
    assert ix["num_partitions"] == 6 and 1 <= ix["default_nprobe"] <= 6 and ix["rows"] == 1200
    assert ix["calibrated_recall_at_10"] >= 0.9 and ix["version"] == t.version == version + 1
    assert sum(1 for _ in ix["recall_curve"]) >= 2 and ix["timings"]["total_seconds"] > 0

    # Queries: exact copies of rows 0..19, so row i must be query i's nearest neighbour.
    qfile = tmp_path / "q.npy"
    np.save(qfile, X[:20])
    out_uri = f"{storage.uri}-out/hits.parquet" if storage.kind == "s3" else str(tmp_path / "out" / "hits.parquet")
    code, out, err = run_cli(capsys, "--json", "search", "docs", "--query-file", qfile, "-k", "5",
                             "--columns", "lang", "--output", out_uri, *la)
    assert code == 0, err
    s = json.loads(out)
    assert (s["queries"], s["result_rows"], s["nprobe"]) == (20, 100, ix["default_nprobe"])
    assert s["partitions_read"] >= 1 and s["bytes_read"] > 0
    data = ObjectStore(parse_location(out_uri, storage.storage_options)).read_bytes(out_uri) \
        if storage.kind == "s3" else Path(out_uri).read_bytes()
    hits = pq.read_table(pa.BufferReader(data))
    assert hits.column_names == ["query_index", "id", "distance", "rank", "lang"]
    top = hits.filter(pa.compute.equal(hits["rank"], 0))
    assert top["id"].to_pylist() == list(range(20))
    assert top["lang"].to_pylist() == ["en" if i % 2 == 0 else "de" for i in range(20)]

    # Readable output: summary then the first rows.
    code, out, err = run_cli(capsys, "search", "docs", "--random", "10", "--filter", "lang = 'de'", "--show", "3", *la)
    assert code == 0, err
    assert "10 queries, k=10" in out and "filter \"lang = 'de'\"" in out
    assert out.splitlines()[-4].split() == ["query_index", "id", "distance", "rank"]
    assert "lakevec: searching 'docs' (10 queries, k=10): done in" in err  # coarse progress line, not a TTY


def test_ingest_bad_rows_and_table_checks(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    X = vectors(50)
    X[7, 3] = np.nan
    src = tmp_path / "bad.parquet"
    src.write_bytes(parquet_bytes(np.arange(50), X))
    code, _, err = run_cli(capsys, "ingest", "t", src, "--lake", lake)  # no lake, no --create
    assert code == 1 and "no lakevec lake" in one_error_line(err) and "--create" in err
    lakevec.connect(lake)
    code, _, err = run_cli(capsys, "ingest", "t", src, "--lake", lake)  # no table, no --create
    assert code == 1 and "table 't' not found" in one_error_line(err) and "pass --create" in err
    code, _, err = run_cli(capsys, "ingest", "t", src, "--lake", lake, "--dim", DIM, "--metric", "cosine")
    assert code == 1 and "row 7" in one_error_line(err) and "nothing was written" in err
    t = lakevec.connect(lake).open_table("t")
    assert t.count_rows() == 0 and t.meta.metric == "cosine"
    code, out, err = run_cli(capsys, "--json", "ingest", "t", src, "--lake", lake, "--on-bad-rows", "skip")
    assert code == 0, err
    r = json.loads(out)
    assert (r["rows_added"], r["rows_rejected"], r["total_rows"]) == (49, 1, 49)
    assert r["problems"] and r["problems"][0][1] == 7
    code, _, err = run_cli(capsys, "ingest", "t", src, "--lake", lake, "--dim", DIM + 1, "--idempotency-key", "k2")
    assert code == 1 and "has dim=16" in one_error_line(err)
    code, _, err = run_cli(capsys, "ingest", "t", tmp_path / "absent.parquet", "--lake", lake)
    assert code == 1 and "absent.parquet" in one_error_line(err)


def test_search_query_file_formats_agree(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    X = vectors(300, seed=1)
    t = lakevec.connect(lake).create_table("t", dim=DIM)
    t.add({"id": np.arange(300), "vector": X})
    Q = X[[5, 17, 250]] + 0.001
    np.save(tmp_path / "q.npy", Q)
    np.save(tmp_path / "one.npy", Q[0])
    raw = np.empty((3, DIM + 1), dtype=np.float32)
    raw[:, 0] = np.array([DIM] * 3, dtype=np.int32).view(np.float32)
    raw[:, 1:] = Q
    raw.tofile(tmp_path / "q.fvecs")
    (tmp_path / "q.parquet").write_bytes(parquet_bytes([105, 117, 350], Q))
    got = {}
    for name in ("q.npy", "q.fvecs", "q.parquet"):
        out_file = tmp_path / f"{name}.out.parquet"
        code, _, err = run_cli(capsys, "search", "t", "--lake", lake, "--query-file", tmp_path / name, "-k", "3",
                               "-o", out_file)
        assert code == 0, err
        got[name] = pq.read_table(out_file)
    assert got["q.npy"]["id"].to_pylist()[::3] == [5, 17, 250]  # unindexed table: exact search
    for name in ("q.fvecs", "q.parquet"):
        assert got[name].select(["query_index", "id", "rank"]).equals(got["q.npy"].select(["query_index", "id", "rank"]))
    assert got["q.parquet"]["query_id"].to_pylist() == [105] * 3 + [117] * 3 + [350] * 3
    code, out, _ = run_cli(capsys, "--json", "search", "t", "--lake", lake, "--query-file", tmp_path / "one.npy")
    assert code == 0 and json.loads(out)["queries"] == 1
    (tmp_path / "q.txt").write_text("1 2 3")
    code, _, err = run_cli(capsys, "search", "t", "--lake", lake, "--query-file", tmp_path / "q.txt")
    assert code == 1 and "unknown format" in one_error_line(err)
    np.save(tmp_path / "wrong.npy", np.ones((2, DIM + 1), dtype=np.float32))
    code, _, err = run_cli(capsys, "search", "t", "--lake", lake, "--query-file", tmp_path / "wrong.npy")
    assert code == 1 and str(DIM) in one_error_line(err)


def test_search_at_version_time_travel(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    t = lakevec.connect(lake).create_table("t", dim=DIM)
    t.add({"id": np.arange(100), "vector": vectors(100)})
    v = t.version
    t.add({"id": np.arange(100, 300), "vector": vectors(200, seed=2)})
    code, out, err = run_cli(capsys, "--json", "search", "t", "--lake", lake, "--random", "20", "--at-version", v,
                             "-k", "100")
    assert code == 0, err
    s = json.loads(out)
    assert s["version"] == v and s["result_rows"] == 20 * 100  # the old version had exactly 100 rows


# -- bench dispatch, progress ----------------------------------------------------------------------

def test_bench_dispatches_to_the_benchmark_module(capsys, monkeypatch):
    import types

    calls = []
    fake = types.ModuleType("lakevec.bench.index")
    fake.main = lambda argv: calls.append(argv) or 4
    monkeypatch.setitem(sys.modules, "lakevec.bench.index", fake)
    code, out, _ = run_cli(capsys, "bench", "index", "--rows", "10", "--help")
    assert code == 4 and calls == [["--rows", "10", "--help"]] and out == ""
    code, out, _ = run_cli(capsys, "--json", "bench", "index")
    assert code == 4 and json.loads(out) == {"bench": "index", "argv": [], "exit_code": 4}
    monkeypatch.setitem(sys.modules, "lakevec.bench.index", None)  # as if the module did not exist
    code, _, err = run_cli(capsys, "bench", "index")
    assert code == 1 and "benchmark 'index' is not available" in one_error_line(err)
    code, _, err = run_cli(capsys, "bench", "datasets")
    assert code == 2 and "invalid choice" in one_error_line(err)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_modes():
    stream = _Tty()
    with common.Progress("work", "tty", stream=stream, interval=0.01) as p:
        p.update("3 files")
        time.sleep(0.05)
    text = stream.getvalue()
    assert text.count("\r") >= 3 and "work" in text and "3 files" in text
    assert text.endswith("lakevec: work: done in " + text.rsplit("done in ", 1)[1])
    assert text.rstrip("\n").rsplit("\r", 1)[1].startswith("lakevec: work: done in")

    lines = io.StringIO()
    with pytest.raises(ValueError):
        with common.Progress("step", "lines", stream=lines):
            raise ValueError("x")
    assert lines.getvalue() == ""  # a failed step prints nothing: the command's error line follows it
    quiet = io.StringIO()
    with common.Progress("step", "off", stream=quiet):
        pass
    assert quiet.getvalue() == ""
    assert common.progress_mode(type("A", (), {"quiet": True, "json": True})()) == "off"
    assert common.progress_mode(type("A", (), {"quiet": False, "json": True})()) == "lines"
    assert common.parse_size("8G") == 8 << 30 and common.parse_size("512MiB") == 512 << 20
    assert common.parse_size("1e9") == 10 ** 9 and common.parse_size("100") == 100
    with pytest.raises(common.UsageError):
        common.parse_size("-5G")


# -- a real subprocess -----------------------------------------------------------------------------

def test_installed_script_exit_codes_and_json(tmp_path):
    exe = REPO / ".venv" / "bin" / "lakevec"
    if not exe.exists():
        exe = Path(sys.executable).parent / "lakevec"
    assert exe.exists(), "the lakevec console script is not installed"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEVEC_"))}

    def sh(*argv):
        return subprocess.run([str(exe), *map(str, argv)], capture_output=True, text=True, env=env, timeout=120)

    p = sh("--help")
    assert p.returncode == 0 and "quickstart" in p.stdout and p.stderr == ""
    p = sh("--lake", "ftp://host/x", "index", "t")
    assert p.returncode == 1 and p.stderr.strip().startswith("lakevec: error: unsupported lake URI scheme 'ftp'")
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = sh("--lake", "s3://bucket/x", "index", "t")  # no credentials anywhere
    assert p.returncode == 1 and "no S3 credentials" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = sh("index")
    assert p.returncode == 2 and "the following arguments are required: table" in p.stderr

    lake = tmp_path / "lake"
    t = lakevec.connect(str(lake)).create_table("t", dim=DIM)
    t.add({"id": np.arange(200), "vector": vectors(200)})
    p = sh("--json", "--lake", lake, "search", "t", "--random", "4", "-k", "2")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["queries"] == 4 and r["result_rows"] == 8 and r["self_found_rate"] == 1.0


# -- quickstart ------------------------------------------------------------------------------------

def test_quickstart_against_the_session_server(s3_server, capsys):
    uri = s3_server.uri("lakevec", f"qs-{uuid.uuid4().hex[:8]}")
    la = ["--lake", uri] + [x for k, v in s3_server.storage_options.items() for x in ("--storage-option", f"{k}={v}")]
    code, out, err = run_cli(capsys, "--json", "quickstart", *la)
    assert code == 0, err
    r = json.loads(out)
    assert r["ok"] and all(r["checks"].values())
    assert r["lake"] == uri and r["rows"] == r["ingest"]["rows_added"] + r["append"]["rows_added"]
    assert r["search"]["recall_at_10"] >= 0.9 and r["idempotent_rerun"]["skipped"]
    assert r["time_travel"]["rows_then"] < r["time_travel"]["rows_now"] == r["rows"]
    assert r["filtered_search"]["all_match"] and r["filtered_search"]["full_k"]
    assert "[8/8]" in err and "server" not in r
    # Without --keep the quickstart removes what it made from the user's lake.
    lake = lakevec.connect(uri, storage_options=s3_server.storage_options)
    assert lake.table_names() == []
    assert not lake.store.list(lake.loc.join("_quickstart_input"), recursive=True)


def test_quickstart_with_its_own_server_prints_a_summary(capsys):
    code, out, err = run_cli(capsys, "quickstart", "--rows", "3000")
    assert code == 0, err
    assert out.startswith("lakevec quickstart on s3://lakevec/lake (embedded SeaweedFS S3 at http://127.0.0.1:")
    for needle in ("recall@10", "time travel", "filtered search", "checks: all 5 passed", "nothing committed"):
        assert needle in out, needle
    assert "[10/10] stopping the S3 server and deleting its data: done" in err


def test_quickstart_data_discovery_and_ground_truth(tmp_path, monkeypatch):
    from lakevec import quickstart as qs

    monkeypatch.setenv("LAKEVEC_DATA", str(tmp_path))  # holds no SIFT files: skipped, falls back
    found = qs.find_data_dir()
    assert found is None or found != tmp_path
    d = qs.load_data(rows=500, synthetic=True)
    assert d.base.shape == (500, 128) and d.groundtruth is None and "synthetic" in d.name
    truth = qs.exact_topk(d.base, d.queries[:7], 10, chunk=128)
    brute = np.argsort(((d.queries[:7, None, :] - d.base[None]) ** 2).sum(-1), axis=1)[:, :10]
    assert (truth == brute).mean() > 0.99  # float ties aside
    res = pa.table({"query_index": np.repeat(np.arange(7), 10).astype(np.int32), "id": truth.ravel()})
    assert qs.recall_at_k(res, truth, 7) == 1.0


# -- the example notebook --------------------------------------------------------------------------

def test_example_notebook_is_valid_and_runs(tmp_path):
    nb = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["language"] == "python"
    code_cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] for c in nb["cells"] if c["cell_type"] == "code")  # stored without outputs
    script = "\n\n".join(code_cells)
    for needle in ("lakevec.connect(", ".add(", ".build_index(", ".search(Q, k=10)", "recall_at_10("):
        assert needle in script, needle
    compile(script, "quickstart.ipynb", "exec")
    # Run its code as a script (the last expression of a cell is just discarded), with synthetic data.
    path = tmp_path / "nb.py"
    path.write_text(script.replace("data = load_data()", "data = load_data(rows=2000, synthetic=True)"))
    # the notebook makes its lake with tempfile.mkdtemp(): give it this test's folder, which pytest cleans up,
    # so no lakevec-notebook-* folder is left in the system's temporary directory
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    p = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    recall = float(p.stdout.split("recall@10 = ")[1].split()[0])
    assert recall >= 0.9, p.stdout
    assert [x.name for x in scratch.iterdir() if x.name.startswith("lakevec-notebook-")], "the lake went elsewhere"
