"""The Ray engine: one Ray task per task record, results collected in task order.

Options (``get_engine("ray", **options)`` or ``lakevec.engines.configure("ray", ...)``):

- ``address``: a Ray cluster to connect to (``"ray://head:10001"``, ``"auto"``, ``"127.0.0.1:6379"``).
  Default: the ``RAY_ADDRESS`` environment variable (set by ``ray job submit``); without it a local
  Ray is started on this machine.
- ``num_cpus``: CPUs of a locally started Ray (default: all cores).
- ``temp_dir``: Ray's session folder for a locally started Ray (default ``<tmp>/lakevec-ray``).
- ``num_cpus_per_task``: CPUs reserved by each task (default 1).
- ``retries``: retries of a task that failed with a transient-looking error or whose worker died
  (default 2). Deterministic lakevec errors (bad rows, schema) are never retried.
- ``task_bytes``: data per task of ingest and index-build jobs (default: about one task per core).
- ``task_wrapper``: ``fn -> fn`` applied to the task function (fault injection in tests).

If Ray is already initialised in this process (``ray.init`` called by the user or a job), the engine
uses it and never shuts it down; otherwise it starts/connects before the job and shuts down after
(``with engine:`` keeps it across several jobs). Every task failure surfaces as the task's own
``LakevecError`` or an ``EngineError`` naming the job and the task.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time

import ray

from ..errors import EngineError
from .base import DistributedEngine, RetryableTaskError, TaskFailure, call_task, task_id_of, unwrap_results

log = logging.getLogger("lakevec.engines")


def _ray_call(fn, task, index):
    # Ray cannot tell a task which attempt it is: every retryable failure raises (Ray retries it,
    # up to max_retries) and the driver unwraps the last one.
    return call_task(fn, task, index, last_attempt=False)


class RayEngine(DistributedEngine):
    """Schedule task records as Ray tasks."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None,
                 num_cpus_per_task: float = 1, retries: int = 2, task_wrapper=None, task_bytes: int | None = None,
                 **_):
        super().__init__(task_wrapper=task_wrapper, retries=retries, task_bytes=task_bytes)
        self.address = address
        self.num_cpus = num_cpus
        self.temp_dir = temp_dir
        self.num_cpus_per_task = num_cpus_per_task

    # lifecycle -------------------------------------------------------------------------------
    def _is_running(self) -> bool:
        return ray.is_initialized()

    def _start(self) -> None:
        address = self.address or os.environ.get("RAY_ADDRESS")
        common = dict(logging_level=logging.WARNING, configure_logging=True, ignore_reinit_error=True)
        if address:
            log.info("ray: connecting to %s", address)
            ray.init(address=address, **common)
            return
        temp_dir = self.temp_dir or os.path.join(tempfile.gettempdir(), "lakevec-ray")
        num_cpus = self.num_cpus or os.cpu_count() or 1
        log.info("ray: starting a local Ray with %d CPUs (session files in %s)", num_cpus, temp_dir)
        ray.init(num_cpus=num_cpus, _temp_dir=temp_dir, include_dashboard=False, **common)

    def _stop(self) -> None:
        ray.shutdown()

    def parallelism(self) -> int:
        """CPUs of the running cluster, or of the one this engine would start."""
        if ray.is_initialized():
            try:
                return max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.num_cpus_per_task, 1e-9)))
            except Exception:
                return 1
        if self.address or os.environ.get("RAY_ADDRESS"):
            return max(2, os.cpu_count() or 1)  # unknown until connected: assume a small cluster
        return int(self.num_cpus or os.cpu_count() or 1)

    # map -------------------------------------------------------------------------------------
    def _map(self, fn, tasks: list, job: str) -> list:
        remote = ray.remote(_ray_call)
        opts = dict(num_cpus=self.num_cpus_per_task, max_retries=self.retries,
                    retry_exceptions=[RetryableTaskError] if self.retries else False)
        fn_ref = ray.put(fn)
        refs = []
        for i, t in enumerate(tasks):
            refs.append(remote.options(name=f"lakevec:{job}:{task_id_of(t, i)}", **opts).remote(fn_ref, t, i))
        index_of = {r: i for i, r in enumerate(refs)}
        outcomes: list = [None] * len(refs)
        pending = list(refs)
        t0, last_log = time.time(), 0.0
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=None)
                for ref in done:
                    i = index_of[ref]
                    outcomes[i] = self._get(ref, tasks[i], i, job)
                    if outcomes[i][0] == "err":
                        raise outcomes[i][1].to_error(job, self.name)
                now = time.time()
                if now - last_log > 10 or not pending:
                    last_log = now
                    log.info("%s: %d/%d tasks done (%.1fs)", job, len(refs) - len(pending), len(refs), now - t0)
        except BaseException:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:
                    pass
            raise
        return unwrap_results(outcomes, job, self.name)

    def _get(self, ref, task, index: int, job: str):
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, RetryableTaskError):
                return ("err", cause.failure)  # retries exhausted: report the original error
            return ("err", TaskFailure(index, task_id_of(task, index), type(cause or e).__name__,
                                       str(cause or e), str(e)))
        except ray.exceptions.RayError as e:  # worker crashed / OOM-killed / node lost, retries exhausted
            text = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise EngineError(f"{job}: task {task_id_of(task, index)} failed on ray after {self.retries} "
                              f"retries: {type(e).__name__}: {text}") from e
