"""Fixtures of the engine tests: one real Ray (2 CPUs) and one real Spark (local[2]) for the whole session.

  ray_cluster    (session)  ``ray.init(num_cpus=2)``; the lakevec Ray engine attaches to it; shut down at the end
  spark_session  (session)  a SparkSession ``local[2,3]`` (2 cores, 3 attempts per task: retries enabled);
                            the lakevec Spark engine attaches to it; stopped at the end
  engine         (per test) parametrized "local" / "ray" / "spark" (starting the session it needs)
  dist_engine    (per test) parametrized "ray" / "spark"

  small_tasks    (fixture)  ``small_tasks(engine, nbytes, **options)``: a context manager in which jobs of
                            ``engine`` use tasks of ``nbytes`` of data (so the small test tables are still split
                            into several parallel tasks) and the other engine options given
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 2 CPUs for the session (the engine attaches to it and never stops it)."""
    import ray
    if ray.is_initialized():  # pragma: no cover - someone else's Ray: use it as is
        yield ray
        return
    tmp = tempfile.mkdtemp(prefix="lvray-", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    ray.init(num_cpus=2, _temp_dir=tmp, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    try:
        from ray.data import DataContext
        DataContext.get_current().enable_progress_bars = False
    except Exception:  # pragma: no cover
        pass
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def spark_session():
    """A SparkSession local[2,3] for the session (the engine attaches to it and never stops it)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2,3]").appName("lakevec-tests")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4").config("spark.python.worker.reuse", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("OFF")  # injected task failures would print Java stack traces
    try:
        yield spark
    finally:
        spark.stop()


def _start(request, name: str) -> str:
    if name == "ray":
        request.getfixturevalue("ray_cluster")
    elif name == "spark":
        request.getfixturevalue("spark_session")
    return name


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray),
                        pytest.param("spark", marks=pytest.mark.spark)])
def engine(request) -> str:
    """An engine name, with its cluster running."""
    return _start(request, request.param)


@pytest.fixture(params=[pytest.param("ray", marks=pytest.mark.ray), pytest.param("spark", marks=pytest.mark.spark)])
def dist_engine(request) -> str:
    """A distributed engine name, with its cluster running."""
    return _start(request, request.param)


@contextlib.contextmanager
def _small_tasks(engine: str, nbytes: int, **options):
    """Within the block, jobs on ``engine`` use tasks of ``nbytes`` of data (plus other engine options)."""
    from lakevec.engines import engine_options
    if engine == "local":
        yield
        return
    with engine_options(engine, task_bytes=nbytes, **options):
        yield


@pytest.fixture
def small_tasks():
    """``with small_tasks(engine, nbytes, **options):`` (see the module docstring)."""
    return _small_tasks


@pytest.fixture
def local_lake(tmp_path):
    """A lake on local disk (for tests where S3 adds nothing but time)."""
    import lakevec
    return lakevec.connect(str(tmp_path / "lake"))


@pytest.fixture
def ref_lake(tmp_path):
    """A second local lake, for reference tables that must have the same name as the table under test."""
    import lakevec
    return lakevec.connect(str(tmp_path / "ref-lake"))
