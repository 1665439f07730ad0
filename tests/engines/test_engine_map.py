"""The engines' map(): results in task order, failures named by task, lakevec errors unwrapped, retries, lifecycle."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import lakevec
from lakevec.engines import configure, engine_options, get_engine
from lakevec.engines.faults import FailOnce, echo_task, raising_task


def test_results_come_back_in_task_order(engine):
    # later tasks finish first: the engine must still return results in task order
    tasks = [{"task_id": i, "value": i * 10, "sleep": 0.3 if i == 0 else 0.0} for i in range(5)]
    out = get_engine(engine).map(echo_task, tasks, name="echo")
    assert [v for v, _pid in out] == [0, 10, 20, 30, 40]
    if engine != "local":  # really ran elsewhere: in worker processes, not in this one
        assert all(pid != os.getpid() for _v, pid in out)


def test_empty_task_list(engine):
    assert get_engine(engine).map(echo_task, [], name="echo") == []


def test_unexpected_failure_is_an_engine_error_naming_job_and_task(engine):
    tasks = [{"task_id": 0, "value": 1}, {"task_id": 7, "error": "ZeroDivisionError", "message": "boom here"}]
    fn = raising_task
    with pytest.raises(lakevec.EngineError) as ei:
        with engine_options(engine, retries=0) if engine != "local" else _null():
            get_engine(engine).map(_pick(fn), tasks, name="myjob")
    msg = str(ei.value)
    assert "myjob" in msg and "task 7" in msg and "boom here" in msg


def test_lakevec_error_of_a_task_is_raised_unchanged(engine):
    tasks = [{"task_id": 0, "value": 1},
             {"task_id": 1, "error": "ValidationError", "message": "3 bad row(s) in x.parquet: row 4 (vector): NaN"}]
    with pytest.raises(lakevec.ValidationError) as ei:
        get_engine(engine).map(_pick(raising_task), tasks, name="ingest")
    assert str(ei.value).startswith("3 bad row(s) in x.parquet: row 4 (vector): NaN")
    assert not isinstance(ei.value, lakevec.EngineError)


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_task_failing_once_is_retried(dist_engine, tmp_path, how):
    # "exit" kills the worker process after the task did its work, as a lost executor would
    fo = FailOnce(str(tmp_path / "markers"), how=how, task_ids=(1, 2))
    tasks = [{"task_id": i, "value": i} for i in range(4)]
    with engine_options(dist_engine, task_wrapper=fo):
        out = get_engine(dist_engine).map(echo_task, tasks, name="flaky")
    assert [v for v, _ in out] == [0, 1, 2, 3]  # one result per task, in order
    assert sorted(fo.attempts()) == ["1", "2"]  # the first attempts did fail


def test_retries_exhausted_name_the_task(dist_engine, tmp_path):
    tasks = [{"task_id": i, "value": i} for i in range(2)] + [{"task_id": 9, "error": "RuntimeError",
                                                                "message": "always fails"}]
    with pytest.raises(lakevec.EngineError) as ei:
        get_engine(dist_engine, retries=1).map(_pick(raising_task), tasks, name="doomed")
    assert "doomed" in str(ei.value) and "task 9" in str(ei.value) and "always fails" in str(ei.value)


def test_engine_attaches_to_a_running_cluster_and_leaves_it_running(dist_engine):
    get_engine(dist_engine).map(echo_task, [{"value": 1}], name="echo")
    if dist_engine == "ray":
        import ray
        assert ray.is_initialized()
    else:
        from pyspark.sql import SparkSession
        s = SparkSession.getActiveSession()
        assert s is not None and s.sparkContext._jsc is not None
        assert s.range(3).count() == 3  # still usable


def test_get_engine_options_and_objects():
    with pytest.raises(lakevec.InvalidArgumentError, match="unknown engine"):
        get_engine("dask")
    with pytest.raises(lakevec.InvalidArgumentError, match="retries"):
        get_engine("ray", retries=-1)
    e = get_engine("ray", num_cpus=3)
    assert get_engine(e) is e  # an engine object passes through (t.add(..., engine=RayEngine(...)))
    configure("spark", master="local[1]")
    try:
        assert get_engine("spark").master == "local[1]"
        assert get_engine("spark", master="local[2]").master == "local[2]"  # arguments win
    finally:
        configure("spark")
    assert get_engine("spark").master is None


@pytest.mark.ray
def test_ray_engine_starts_and_stops_its_own_ray():
    # In a fresh process without Ray: the engine starts a local Ray for the job and shuts it down after.
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="lvray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    code = textwrap.dedent("""
        import ray
        from lakevec.engines import get_engine
        from lakevec.engines.faults import echo_task
        out = get_engine("ray", num_cpus=1, temp_dir=%r).map(echo_task, [{"value": 5}], name="echo")
        print(out[0][0], ray.is_initialized())
    """ % tmp)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "5 False"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _pick(fn):
    """Route records with an "error" key to ``fn``, the others to echo_task (one function for the map)."""
    return _Router(fn)


class _Router:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, task):
        return self.fn(task) if "error" in task else echo_task(task)[0]
