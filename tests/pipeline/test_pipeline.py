"""Scheduled pipelines: every step idempotent and resumable, dry runs that change nothing, the run report, the
file's validation and the example Airflow DAG (local disk and the embedded S3 server)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from core_helpers import arrow_rows, source_root, write_parquet

import lakevec
from lakevec.pipeline import load, parse, run

REPO = Path(__file__).resolve().parents[2]
DIM = 8


def _pipeline(storage, root, out, steps=("ingest", "compact", "optimize", "dedup", "export")) -> dict:
    by_kind = {
        "ingest": {"kind": "ingest", "table": "docs", "sources": [root], "create": {"dim": DIM, "metric": "l2"}},
        "compact": {"kind": "compact", "table": "docs"},
        "optimize": {"kind": "optimize", "table": "docs"},
        "dedup": {"kind": "dedup", "table": "docs", "threshold": 0.0, "k": 5, "output": f"{out}/dupes/v{{version}}"},
        "export": {"kind": "export", "table": "docs", "columns": ["id", "tag"], "output": f"{out}/export"},
    }
    doc = {"name": "nightly", "lake": storage.uri, "step": [by_kind[s] for s in steps]}
    if storage.storage_options:
        doc["storage_options"] = dict(storage.storage_options)
    return doc


def _day(storage, root, k, n=300):
    t = arrow_rows(n, DIM, start=k * n, seed=k)
    if k == 1:  # a few exact duplicates of day 0's vectors: dedup groups
        import pyarrow as pa
        v = t.column("vector").to_pylist()
        v[:3] = arrow_rows(3, DIM, start=0, seed=0).column("vector").to_pylist()
        t = t.set_column(1, "vector", pa.array(v, t.schema.field("vector").type))
    return write_parquet(storage, root, f"day-{k}.parquet", t)


def test_a_nightly_run_and_its_rerun(storage, tmp_path):
    root = source_root(storage, tmp_path)
    out = source_root(storage, tmp_path)
    _day(storage, root, 0)
    pl = parse(_pipeline(storage, root, out))
    r1 = run(pl)
    st = {s["name"]: s["status"] for s in r1["steps"]}
    assert st == {"ingest": "committed", "compact": "no-op", "optimize": "committed", "dedup": "committed",
                  "export": "committed"}, r1["steps"]
    t = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("docs")
    v1 = t.version
    assert t.count_rows() == 300 and t.index_info() is not None  # the first night built the index
    exp = next(s for s in r1["steps"] if s["name"] == "export")
    assert exp["rows"] == 300 and exp["output"].endswith(f"/export/v{v1}")
    from lakevec.join import read_output
    assert sorted(read_output(exp["output"], storage.storage_options).column("id").to_pylist()) == list(range(300))
    # the same night again: nothing new, nothing committed
    r2 = run(pl)
    assert [s["status"] for s in r2["steps"]] == ["no-op"] * 5 and r2["committed"] == 0
    assert t.version == v1
    # the next night: one new file; every step sees the new version
    _day(storage, root, 1)
    r3 = run(pl)
    st = {s["name"]: s for s in r3["steps"]}
    assert st["ingest"]["status"] == "committed" and st["ingest"]["rows"] == 300
    assert st["dedup"]["status"] == "committed" and st["dedup"]["groups"] == 3  # day 1's copies of day 0's rows
    assert st["export"]["rows"] == 600 and st["export"]["output"] != exp["output"]
    for s in r3["steps"]:
        assert {"seconds", "io"} <= set(s) and {"gets", "puts", "bytes_read", "estimated_cost_usd"} <= set(s["io"])


def test_a_crashed_run_resumes_where_it_stopped(storage, tmp_path, monkeypatch):
    import lakevec.pipeline.steps as steps
    root = source_root(storage, tmp_path)
    out = source_root(storage, tmp_path)
    _day(storage, root, 0)
    pl = parse(_pipeline(storage, root, out))

    def broken(ctx, step):
        raise lakevec.StorageError("injected: the store went away during the export")

    plan_fn, run_fn = steps.STEPS["export"]
    monkeypatch.setitem(steps.STEPS, "export", (plan_fn, broken))
    with pytest.raises(lakevec.StorageError) as ei:
        run(pl)
    rep = ei.value.run_report
    assert rep["failed_step"] == "export" and rep["steps"][-1]["status"] == "failed"
    assert [s["status"] for s in rep["steps"][:-1]] == ["committed", "no-op", "committed", "committed"]
    monkeypatch.setitem(steps.STEPS, "export", (plan_fn, run_fn))
    r = run(pl)  # the re-run: only the step that had not committed does work
    assert [s["status"] for s in r["steps"]] == ["no-op", "no-op", "no-op", "no-op", "committed"]
    t = lakevec.connect(storage.uri, storage_options=storage.storage_options).open_table("docs")
    assert t.count_rows() == 300  # ingested once


def test_a_dry_run_changes_nothing_and_tells_the_plan(storage, tmp_path):
    root = source_root(storage, tmp_path)
    out = source_root(storage, tmp_path)
    _day(storage, root, 0)
    _day(storage, root, 1)
    pl = parse(_pipeline(storage, root, out))
    plan = run(pl, dry_run=True)
    ing = plan["steps"][0]
    assert ing["status"] == "planned" and ing["files_new"] == 2 and ing["rows"] == 600 and ing["bytes_read"] > 0
    assert plan["estimated"]["gets"] > 0 and plan["estimated"]["cost_usd"] >= 0
    assert all(s["status"] == "planned" for s in plan["steps"])
    with pytest.raises(lakevec.NotALakeError):  # not even the lake marker was written
        lakevec.lake.Lake(storage.uri, storage.storage_options, create=False)
    run(pl)
    plan = run(pl, dry_run=True)
    assert plan["steps"][0]["files_new"] == 0 and "nothing new" in plan["steps"][0]["action"]
    assert "nothing new" in plan["steps"][3]["action"] and "nothing new" in plan["steps"][4]["action"]


@pytest.mark.parametrize("doc, needle", [
    ({"step": [{"kind": "ingest", "table": "t", "sources": ["x"]}]}, "no lake"),
    ({"lake": "/x", "step": []}, "no steps"),
    ({"lake": "/x", "step": [{"kind": "reindex", "table": "t"}]}, "kind 'reindex'"),
    ({"lake": "/x", "step": [{"kind": "compact"}]}, "table"),
    ({"lake": "/x", "step": [{"kind": "compact", "table": "t", "treshold": 1}]}, "unknown key(s) ['treshold']"),
    ({"lake": "/x", "step": [{"kind": "dedup", "table": "t", "output": "/o"}]}, "threshold is required"),
    ({"lake": "/x", "step": [{"kind": "join", "table": "t", "output": "/o"}]}, "exactly one of left"),
    ({"lake": "/x", "step": [{"kind": "compact", "table": "t"}, {"kind": "compact", "table": "u"}]}, "two steps"),
])
def test_a_bad_pipeline_file_is_refused_naming_the_step(doc, needle, monkeypatch):
    monkeypatch.delenv("LAKEVEC_LAKE", raising=False)
    with pytest.raises(lakevec.InvalidArgumentError, match=needle.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse(doc, "p.toml")


def test_cli_validate_run_report_and_only(tmp_path, capsys):
    from lakevec.cli.main import main as cli
    from conftest import Storage
    storage = Storage("local", str(tmp_path / "lake"), None)
    root, out = str(tmp_path / "landing"), str(tmp_path / "out")
    (tmp_path / "landing").mkdir()
    _day(storage, root, 0)
    doc = _pipeline(storage, root, out)
    lines = [f'name = "{doc["name"]}"', f'lake = "{doc["lake"]}"']
    for s in doc["step"]:
        lines.append("[[step]]")
        lines += [f"{k} = {json.dumps(v)}" if not isinstance(v, dict) else
                  f"{k} = {{ " + ", ".join(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()) + " }" for k, v in s.items()]
    f = tmp_path / "p.toml"
    f.write_text("\n".join(lines) + "\n")
    assert cli(["pipeline", "validate", str(f)]) == 0
    assert "is valid" in capsys.readouterr().out
    assert cli(["--json", "pipeline", "run", str(f), "--only", "ingest,optimize", "--report", str(tmp_path / "r.json")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in rep["steps"]] == ["ingest", "optimize"]
    assert json.loads((tmp_path / "r.json").read_text())["run_id"] == rep["run_id"]
    assert cli(["pipeline", "run", str(f), "--only", "nosuch"]) == 1
    assert "no step named" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    assert cli(["pipeline", "validate", str(bad)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


def test_the_example_pipeline_and_airflow_dag_use_only_the_cli(monkeypatch):
    monkeypatch.setenv("LAKEVEC_LAKE", "s3://my-bucket/lake")  # the example takes its lake from there
    pl = load(REPO / "jobs" / "nightly.toml")
    names = [s.name for s in pl.steps]
    src = (REPO / "jobs" / "airflow_nightly_dag.py").read_text()
    tree = ast.parse(src)
    cmds = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            for kw in node.keywords if kw.arg == "bash_command"]
    assert cmds, "no BashOperator in the DAG"
    for c in cmds:  # f-strings: their constant parts start with the lakevec command
        first = c.values[0].value if isinstance(c, ast.JoinedStr) else c.value
        assert first.startswith("lakevec "), first
    steps = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and
                 getattr(n.targets[0], "id", None) == "STEPS")
    assert [e.value for e in steps.elts] == names  # the DAG's tasks are the pipeline's steps
