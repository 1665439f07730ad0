"""Fixtures of the join tests: small indexed tables, brute force, and real Ray / Spark sessions.

  ray_cluster, spark_session (session)  as in tests/engines/conftest.py (a Ray / Spark already running in
                                         the process is reused and left alone)
  engine (per test)                      parametrized "local" / "ray" / "spark", its cluster running
  make_table(lake, name, x, ...)         a table of vectors ``x`` (ids 0..n-1 or given), indexed
Helpers in ``join_helpers`` (this folder is put on sys.path).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
sys.path.append(os.path.dirname(__file__))  # after tests/: `from conftest import` stays tests/conftest.py


@pytest.fixture(scope="session")
def ray_cluster():
    import ray
    if ray.is_initialized():
        yield ray
        return
    tmp = tempfile.mkdtemp(prefix="lvray-", dir="/tmp")
    ray.init(num_cpus=2, _temp_dir=tmp, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
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
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    spark = (SparkSession.builder.master("local[2,3]").appName("lakevec-join-tests")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4").config("spark.python.worker.reuse", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("OFF")
    try:
        yield spark
    finally:
        spark.stop()


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray),
                        pytest.param("spark", marks=pytest.mark.spark)])
def engine(request) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    elif request.param == "spark":
        request.getfixturevalue("spark_session")
    return request.param


@pytest.fixture
def local_lake(tmp_path):
    import lakevec
    return lakevec.connect(str(tmp_path / "lake"))
