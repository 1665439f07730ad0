"""Progress: ``lakevec.progress`` (what library code reports) and ``lakevec.cli.display`` (how the CLI shows it).

Library calls report phases with counts; the user's ``progress=`` decides where they go: nowhere, tqdm bars,
or a callable. The CLI's step is itself a reporter: phases show as a live tqdm line on a terminal and as one
line per finished phase in logs; a failed step prints nothing.
"""
from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest

import lakevec
from lakevec.cli import common
from lakevec.cli import main as cli_main
from lakevec.cli.display import Step
from lakevec.progress import Progress, ProgressEvent, progress_for


def fake_build(progress, rows=1000, fail_at=None):
    """Library-style code: reports its phases through progress_for, as Table.build_index does."""
    with progress_for(progress, "build_index") as p:
        p.phase("sample", total=200, unit="rows")
        p.advance(200)
        p.phase("train", detail="8 centroids")
        p.phase("assign", total=rows, unit="rows")
        for _ in range(rows // 100):
            if fail_at == "assign":
                raise RuntimeError("task failed")
            p.advance(100)
        p.phase("commit")
    return "built"


def test_callable_receives_phases_with_counts_in_order():
    events: list[ProgressEvent] = []
    assert fake_build(events.append) == "built"
    kinds = [(e.kind, e.phase) for e in events if e.kind != "update"]
    assert kinds == [("phase", "sample"), ("phase_end", "sample"), ("phase", "train"), ("phase_end", "train"),
                     ("phase", "assign"), ("phase_end", "assign"), ("phase", "commit"), ("phase_end", "commit"),
                     ("end", None)]
    assign_end = next(e for e in events if e.kind == "phase_end" and e.phase == "assign")
    assert (assign_end.done, assign_end.total, assign_end.unit, assign_end.ok) == (1000, 1000, "rows", True)
    assert assign_end.fraction == 1.0 and assign_end.describe() == "assign 1,000/1,000 rows"
    train = next(e for e in events if e.phase == "train")
    assert train.detail == "8 centroids" and train.total is None and train.fraction is None
    assert events[-1].task == "build_index" and events[-1].ok


def test_updates_are_throttled_but_the_last_count_always_arrives():
    events = []
    with progress_for(events.append, "add") as p:
        p.phase("write", total=10_000, unit="rows")
        for _ in range(10_000):
            p.advance(1)
    updates = [e for e in events if e.kind == "update"]
    assert 1 <= len(updates) < 100  # not one event per advance()
    assert updates[-1].done == 10_000  # reaching the total is always reported
    end = next(e for e in events if e.kind == "phase_end")
    assert end.done == 10_000


def test_failure_ends_the_phase_and_the_work_not_ok():
    events = []
    with pytest.raises(RuntimeError):
        fake_build(events.append, fail_at="assign")
    assert (events[-2].kind, events[-2].phase, events[-2].ok) == ("phase_end", "assign", False)
    assert (events[-1].kind, events[-1].ok) == ("end", False)


def test_none_and_false_report_nothing_and_bad_values_are_refused():
    for off in (None, False):
        p = progress_for(off, "x")
        assert type(p) is Progress and not p.enabled
        assert fake_build(off) == "built"
    with pytest.raises(lakevec.InvalidArgumentError, match="progress must be"):
        progress_for("yes", "x")


def test_true_shows_tqdm_bars_on_stderr(capsys):
    fake_build(True)
    err = capsys.readouterr().err
    assert "build_index: assign" in err and "100%" in err and "1.00k/1.00k" in err


def test_advance_from_many_threads_counts_everything():
    events = []
    with progress_for(events.append, "build_index") as p:
        p.phase("assign", total=8 * 500, unit="rows")
        threads = [threading.Thread(target=lambda: [p.advance(1) for _ in range(500)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert next(e for e in events if e.kind == "phase_end").done == 4000


# -- the CLI's step ----------------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_step_in_log_mode_prints_one_line_per_finished_phase():
    out = io.StringIO()
    with Step("building the index of 'docs'", "lines", stream=out) as step:
        fake_build(step)  # the library borrows the step: its phases show inside it
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 2)[2].split(" in ")[0] for line in lines[:-1]] == [
        "sample 200/200 rows", "train: 8 centroids", "assign 1,000/1,000 rows", "commit"]
    assert all(line.startswith("lakevec: building the index of 'docs': ") for line in lines)
    assert lines[-1].startswith("lakevec: building the index of 'docs': done in ")
    assert [e.phase for e in step.phases] == ["sample", "train", "assign", "commit"]


def test_step_on_a_terminal_shows_percentages_live_and_erases_itself_on_failure():
    tty = _Tty()
    with Step("indexing", "tty", stream=tty, interval=0.01) as step:
        with progress_for(step, "build_index") as p:
            p.phase("assign", total=400, unit="rows")
            p.advance(100)
            time.sleep(0.05)
            live = tty.getvalue()
            p.advance(300)
    text = tty.getvalue()
    assert "indexing: assign" in live and "25%" in live and "100/400 rows" in live
    assert "lakevec: indexing: assign 400/400 rows in" in text  # the finished phase left its line
    assert text.rstrip("\n").rsplit("\n", 1)[-1].split("\r")[-1].startswith("lakevec: indexing: done in")

    tty = _Tty()
    with pytest.raises(KeyError):
        with Step("indexing", "tty", stream=tty, interval=0.01) as step:
            step.phase("assign", total=10)
            time.sleep(0.03)
            raise KeyError("x")
    text = tty.getvalue()
    assert "indexing" in text and "done" not in text and "lakevec: indexing" not in text
    assert text.endswith("\r") or text.rsplit("\r", 1)[-1].strip() == ""  # the live line was cleared


def test_a_nested_call_that_fails_leaves_no_line_for_its_phase():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Step("indexing", "lines", stream=out) as step:
            fake_build(step, fail_at="assign")
    lines = out.getvalue().splitlines()
    assert [x.split(": ")[2].split(" ")[0] for x in lines] == ["sample", "train"]  # not assign, and no "done"
    assert [(e.phase, e.ok) for e in step.phases] == [("sample", True), ("train", True), ("assign", False)]


def test_quiet_step_prints_nothing():
    out = io.StringIO()
    with Step("x", "off", stream=out) as step:
        fake_build(step)
    assert out.getvalue() == "" and len(step.phases) == 4


def test_call_with_progress_falls_back_when_the_library_takes_no_progress():
    seen = []

    def new(x, progress=None):
        seen.append(progress)
        return x

    def old(x):
        return x * 2

    step = Step("s", "off")
    assert common.call_with_progress(new, step, 3) == 3 and seen == [step]
    assert common.call_with_progress(old, step, 3) == 6

    def broken(x, progress=None):
        raise TypeError("something else")

    with pytest.raises(TypeError, match="something else"):
        common.call_with_progress(broken, step, 1)


def test_index_command_reports_its_steps_and_phases(tmp_path, capsys):
    lake = str(tmp_path / "lake")
    t = lakevec.connect(lake).create_table("t", dim=8)
    t.add({"id": np.arange(2000), "vector": np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)})
    code = cli_main.main(["--json", "index", "t", "--lake", lake, "--num-partitions", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = err.splitlines()
    assert lines[-1].startswith("lakevec: building the index of 't' (2,000 rows, engine local): done in ")
    r = json.loads(out)
    names = [p["phase"] for p in r["phases"]]
    assert names == ["sample", "train", "assign", "commit"], names
    assert any(p["phase"] == "assign" and p["total"] == 2000 and p["done"] == 2000 for p in r["phases"])
    assert len(lines) >= 5  # one line per finished phase, then the step


def test_ingest_reports_the_data_bytes_it_wrote(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(0).standard_normal((5000, 32)).astype(np.float32)
    pq.write_table(pa.table({"id": np.arange(5000), "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()),
                                                                                               32)}),
                   tmp_path / "src.parquet")
    code = cli_main.main(["--json", "ingest", "t", str(tmp_path / "src.parquet"), "--create", "--lake",
                          str(tmp_path / "lake")])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert r["bytes_written"] >= x.nbytes * 0.9  # the vectors themselves, not only lakevec's small records
    line = next(x for x in err.splitlines() if "ingesting into 't': done" in x)
    assert line.endswith(f"(5,000 rows, {common.fmt_bytes(r['bytes_written'])} written -> version {r['version']})")
