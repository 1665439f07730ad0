"""The Spark engine: one Spark task (RDD partition) per task record, results collected in task order.

Options (``get_engine("spark", **options)`` or ``lakevec.engines.configure("spark", ...)``):

- ``master``: the master of a session this engine starts (default ``local[<num_cpus>,<retries+1>]``;
  under ``spark-submit`` the submitted master is used).
- ``num_cpus``: cores of a locally started session (default: all cores).
- ``retries``: task retries of a locally started session (``local[N,F]`` with F = retries + 1; on a
  cluster ``spark.task.maxFailures`` decides). Deterministic lakevec errors are never retried.
- ``conf``: extra Spark settings for a session this engine starts (dict).
- ``task_bytes``: data per task of ingest and index-build jobs (default: about one task per core).
- ``task_wrapper``: ``fn -> fn`` applied to the task function (fault injection in tests).

If a SparkSession is active in this process (created by the user, a notebook or ``spark-submit``) it
is used and never stopped; otherwise the engine starts one before the job and stops it after
(``with engine:`` keeps it across several jobs). I/O happens in Python inside the tasks (lance,
pyarrow), so no Hadoop S3 connector is needed. ``SPARK_LOCAL_IP`` defaults to 127.0.0.1 for a
local master.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import sys
import time

from ..errors import EngineError
from .base import DistributedEngine, blas_threads, call_task, task_id_of, unwrap_results

log = logging.getLogger("lakevec.engines")

_LOCAL_RE = re.compile(r"^local\[(\*|\d+)(?:\s*,\s*(\d+))?\]$")
_TASK_RE = re.compile(r"\[lakevec-task ([^\]]+)\]")
_STAGE_TASK_RE = re.compile(r"Task (\d+) in stage")


def active_session():
    """Return the active SparkSession of this process, or None (never starts one)."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark.sql import SparkSession
    s = SparkSession.getActiveSession()
    if s is None:
        from pyspark import SparkContext
        if SparkContext._active_spark_context is not None:  # a context without an active session
            s = SparkSession.builder.getOrCreate()
    return s


def max_task_attempts(sc) -> int:
    """Return how many attempts Spark gives a task (local[N,F] -> F; local[N] -> 1; else maxFailures)."""
    master = sc.master or ""
    m = _LOCAL_RE.match(master)
    if m:
        return int(m.group(2) or 1)
    if master.startswith("local"):
        return 1
    try:
        return int(sc.getConf().get("spark.task.maxFailures", "4"))
    except Exception:
        return 4


def _task_cpus(ctx) -> int | None:
    try:
        return int(ctx.cpus()) if ctx is not None else None
    except Exception:  # older Spark: no TaskContext.cpus()
        return None


def _partition_runner(fn, attempts: int):
    """Return the mapPartitions function that runs the records of one partition (one record each)."""

    def run(it):
        from pyspark import TaskContext
        ctx = TaskContext.get()
        last = ctx is None or ctx.attemptNumber() + 1 >= attempts
        cpus = _task_cpus(ctx)
        for index, raw in it:
            task = pickle.loads(raw)
            with blas_threads(cpus):  # the task owns spark.task.cpus cores, not the whole machine
                out = call_task(fn, task, index, last_attempt=last)
            yield index, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)

    return run


class SparkEngine(DistributedEngine):
    """Schedule task records as Spark tasks (one RDD partition per record)."""

    name = "spark"

    def __init__(self, master: str | None = None, num_cpus: int | None = None, retries: int = 2,
                 conf: dict | None = None, task_wrapper=None, app_name: str = "lakevec",
                 task_bytes: int | None = None, **_):
        super().__init__(task_wrapper=task_wrapper, retries=retries, task_bytes=task_bytes)
        self.master = master
        self.num_cpus = num_cpus
        self.conf = dict(conf or {})
        self.app_name = app_name
        self._session = None

    # lifecycle -------------------------------------------------------------------------------
    def _is_running(self) -> bool:
        return active_session() is not None

    def session(self):
        """The SparkSession in use (the active one, or the one this engine started)."""
        s = active_session()
        if s is None:
            raise EngineError("no Spark session: use the engine inside `with engine:` or map()")
        return s

    def _start(self) -> None:
        from pyspark.sql import SparkSession
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        b = SparkSession.builder.appName(self.app_name)
        master = self.master
        if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit
            master = f"local[{self.num_cpus or os.cpu_count() or 1},{self.retries + 1}]"
        if master is not None:
            if master.startswith("local"):
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            b = b.master(master)
        settings = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                    "spark.python.worker.reuse": "true", "spark.sql.execution.arrow.pyspark.enabled": "true"}
        settings.update(self.conf)
        for k, v in settings.items():
            b = b.config(k, v)
        log.info("spark: starting a session (master %s)", master or "from spark-submit")
        self._session = b.getOrCreate()
        self._session.sparkContext.setLogLevel(os.environ.get("LAKEVEC_SPARK_LOG_LEVEL", "ERROR"))

    def _stop(self) -> None:
        s = self._session or active_session()
        self._session = None
        if s is not None:
            s.stop()

    def parallelism(self) -> int:
        """Default parallelism of the running session, or of the one this engine would start."""
        s = active_session()
        if s is not None:
            return max(1, int(s.sparkContext.defaultParallelism))
        m = _LOCAL_RE.match(self.master or "")
        if m and m.group(1) != "*":
            return int(m.group(1))
        return int(self.num_cpus or os.cpu_count() or 1)

    # map -------------------------------------------------------------------------------------
    def _map(self, fn, tasks: list, job: str) -> list:
        sc = self.session().sparkContext
        records = [(i, pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)) for i, t in enumerate(tasks)]
        rdd = sc.parallelize(records, len(records))  # one record per partition
        sc.setJobDescription(f"lakevec {job} ({len(tasks)} tasks)")
        t0 = time.time()
        try:
            collected = rdd.mapPartitions(_partition_runner(fn, max_task_attempts(sc))).collect()
        except Exception as e:
            raise self._job_error(e, tasks, job) from e
        finally:
            sc.setJobDescription(None)
        outcomes: list = [None] * len(tasks)
        for index, raw in collected:  # one value per partition; keep the first if ever duplicated
            if outcomes[index] is None:
                outcomes[index] = pickle.loads(raw)
        missing = [task_id_of(tasks[i], i) for i, o in enumerate(outcomes) if o is None]
        if missing:
            raise EngineError(f"{job}: spark returned no result for task(s) {missing[:10]}")
        log.info("%s: %d tasks done on spark (%.1fs)", job, len(tasks), time.time() - t0)
        return unwrap_results(outcomes, job, self.name)

    def _job_error(self, e: Exception, tasks: list, job: str) -> EngineError:
        """Turn a failed Spark job (worker crash, retries exhausted) into an EngineError naming the task."""
        text = str(e)
        m = _TASK_RE.search(text)
        if m:
            tid = m.group(1)
        else:
            m = _STAGE_TASK_RE.search(text)
            tid = task_id_of(tasks[int(m.group(1))], int(m.group(1))) if m and int(m.group(1)) < len(tasks) else "?"
        reason = ""
        for line in text.splitlines():
            line = line.strip()
            if line and ("Error" in line or "Exception" in line) and not line.startswith("at "):
                reason = line[:300]
        return EngineError(f"{job}: task {tid} failed on spark: {reason or type(e).__name__}")

