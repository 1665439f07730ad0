"""Fault injection and small test tasks, for testing engines and exactly-once behaviour under retries.

``FailOnce(marker_dir, how="raise"|"exit", task_ids=None)`` is a task wrapper (``fn -> fn``) for the
engines' ``task_wrapper`` option: the wrapped task runs completely (so it has written its fragment
files), then, on its first attempt only, fails: ``"raise"`` raises a RuntimeError (the engine retries
it), ``"exit"`` kills the worker process (``os._exit``), as a lost executor would. First attempts are
recorded as marker files in ``marker_dir`` (shared by driver and workers: a local folder here), so
the retry succeeds. The written-but-never-committed files of the failed attempts are what
``vacuum`` must later remove.

    from lakevec.engines import engine_options
    from lakevec.engines.faults import FailOnce
    with engine_options("ray", task_wrapper=FailOnce(tmp)):
        t.build_index(engine="ray")
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FailOnce:
    """Wrap task functions so that each task fails on its first attempt (after doing its work)."""

    marker_dir: str
    how: str = "raise"  # "raise" | "exit"
    task_ids: tuple | None = None  # only these tasks fail (default: every task)
    before: bool = False  # fail before running the task instead of after it

    def __call__(self, fn):
        return _FailingTask(fn, self)

    def attempts(self) -> dict:
        """Return {task id: number of failed first attempts recorded} (0 or 1)."""
        out = {}
        if os.path.isdir(self.marker_dir):
            for n in os.listdir(self.marker_dir):
                if n.startswith("failed-"):
                    out[n[len("failed-"):]] = 1
        return out


@dataclass(frozen=True)
class _FailingTask:
    fn: object
    spec: FailOnce

    def __call__(self, task):
        tid = task.get("task_id") if isinstance(task, dict) else getattr(task, "task_id", None)
        selected = self.spec.task_ids is None or tid in self.spec.task_ids
        marker = os.path.join(self.spec.marker_dir, f"failed-{tid}")
        if not self.spec.before:
            result = self.fn(task)
        if selected and not os.path.exists(marker):
            os.makedirs(self.spec.marker_dir, exist_ok=True)
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            if self.spec.how == "exit":
                os._exit(17)
            raise RuntimeError(f"injected failure of task {tid} (first attempt)")
        return self.fn(task) if self.spec.before else result


def echo_task(task: dict):
    """A test task: sleep ``task["sleep"]`` seconds, then return ``task["value"]`` (and the worker's pid)."""
    import time
    time.sleep(float(task.get("sleep", 0)))
    return task["value"], os.getpid()


def raising_task(task: dict):
    """A test task: raise ``task["error"]`` (an exception class from ``lakevec.errors`` or builtins)."""
    import builtins

    from .. import errors
    cls = getattr(errors, task["error"], None) or getattr(builtins, task["error"])
    raise cls(task.get("message", f"task {task.get('task_id')} failed on purpose"))
