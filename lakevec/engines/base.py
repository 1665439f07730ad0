"""What the distributed engines share: the task wrapper, failure records, retries and the lifecycle.

A task runs inside ``call_task(fn, task, index, last_attempt)`` on the worker:

- success returns ``("ok", result)``;
- a *deterministic* failure (any ``LakevecError`` except ``StorageError``: bad rows, schema drift, a
  missing index...) returns ``("err", TaskFailure)`` at once: retrying cannot help, and returning it
  (instead of raising) keeps Spark/Ray from retrying it;
- a *transient-looking* failure (``StorageError`` other than credentials, or any non-lakevec exception)
  raises ``RetryableTaskError`` so that the engine retries the task; on the last attempt (when the
  engine can tell, as Spark can) it is returned as a failure record instead.

The driver turns a failure record back into the original ``LakevecError`` (so that, e.g., bad rows
give the same ``ValidationError`` under every engine), or into an ``EngineError`` naming the job and
the task (``"build_index: task 3 failed on ray: ValueError: ..."``).

Exactly-once: engines return exactly one result per task index (Ray: one object per submitted task;
Spark: one collected value per partition, de-duplicated by index). Files written by a failed,
retried or speculative attempt are never committed; ``lakevec.maintenance.vacuum`` removes them.
"""
from __future__ import annotations

import logging
import pickle
import traceback
from dataclasses import dataclass

from ..errors import CredentialsError, EngineError, LakevecError, StorageError

log = logging.getLogger("lakevec.engines")


def task_id_of(task, index: int):
    """Return the id a task is named by in messages: its ``task_id`` field (or key), else its position."""
    if isinstance(task, dict):
        return task.get("task_id", index)
    return getattr(task, "task_id", index)


def retryable(e: BaseException) -> bool:
    """Return True if retrying the task may help (transient storage errors, unexpected exceptions)."""
    if isinstance(e, LakevecError):
        return isinstance(e, StorageError) and not isinstance(e, CredentialsError)
    return isinstance(e, Exception)


@dataclass
class TaskFailure:
    """A task's failure as data: the original exception pickled (when possible) plus its text."""

    index: int
    task_id: object
    type_name: str
    message: str
    traceback: str
    pickled: bytes | None = None

    @classmethod
    def of(cls, e: BaseException, index: int, task_id) -> "TaskFailure":
        try:
            raw = pickle.dumps(e)
            pickle.loads(raw)  # some exceptions pickle but cannot be rebuilt
        except Exception:
            raw = None
        return cls(index, task_id, type(e).__name__, str(e), traceback.format_exc(), raw)

    def original(self) -> BaseException | None:
        if self.pickled is None:
            return None
        try:
            return pickle.loads(self.pickled)
        except Exception:
            return None

    def to_error(self, job: str, engine: str) -> LakevecError:
        """Return the exception the driver raises: the original LakevecError, or an EngineError."""
        orig = self.original()
        if isinstance(orig, LakevecError):
            try:
                orig.add_note(f"(raised by {job} task {self.task_id} on the {engine} engine)")
            except AttributeError:  # Python < 3.11
                pass
            return orig
        first = self.message.strip().splitlines()[0][:500] if self.message.strip() else ""
        err = EngineError(f"{job}: task {self.task_id} failed on {engine}: {self.type_name}: {first}")
        err.remote_traceback = self.traceback  # type: ignore[attr-defined]
        return err


class RetryableTaskError(Exception):
    """Raised on a worker so that the engine retries the task; carries the failure record."""

    def __init__(self, failure: TaskFailure):
        super().__init__(f"[lakevec-task {failure.task_id}] {failure.type_name}: {failure.message[:500]}")
        self.failure = failure

    def __reduce__(self):
        return (RetryableTaskError, (self.failure,))


def blas_threads(n: int | None):
    """Context manager limiting BLAS/OpenMP threads to ``n`` in this worker (no-op if None or unavailable).

    A task is given ``n`` cores by its engine; kernels that spawn a thread per core of the machine would
    oversubscribe it when every core runs a task."""
    import contextlib
    if not n:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n))


def call_task(fn, task, index: int, last_attempt: bool = False):
    """Run ``fn(task)`` on a worker; see the module docstring for the result protocol."""
    try:
        return ("ok", fn(task))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        failure = TaskFailure.of(e, index, task_id_of(task, index))
        if not last_attempt and retryable(e):
            log.warning("task %s failed (%s: %s); the engine may retry it", failure.task_id, failure.type_name,
                        failure.message[:200])
            raise RetryableTaskError(failure) from None
        return ("err", failure)


def unwrap_results(outcomes: list, job: str, engine: str) -> list:
    """Return the task results in order, or raise the first task's failure (lowest index)."""
    for o in outcomes:
        if o[0] == "err":
            raise o[1].to_error(job, engine)
    return [o[1] for o in outcomes]


class DistributedEngine:
    """Lifecycle shared by Ray and Spark: attach to a running cluster or start one, stop what we started.

    ``with engine:`` keeps the cluster/session for several ``map`` calls; otherwise every ``map``
    that had to start it stops it again before returning.
    """

    name = "distributed"

    def __init__(self, task_wrapper=None, retries: int = 2, task_bytes: int | None = None):
        if not isinstance(retries, int) or retries < 0:
            from ..errors import InvalidArgumentError
            raise InvalidArgumentError(f"retries must be a non-negative integer, got {retries!r}")
        self.task_wrapper = task_wrapper  # fn -> fn (fault injection in tests; identity otherwise)
        self.fixed_task_bytes = task_bytes  # data per task of ingest/build jobs (None: one task per core)
        self.retries = retries
        self._depth = 0  # nesting of `with` blocks / running maps
        self._started = False  # True if this engine started (or connected to) the cluster itself

    # subclasses implement these --------------------------------------------------------------
    def _is_running(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stop(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _map(self, fn, tasks: list, job: str) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def parallelism(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    # lifecycle -------------------------------------------------------------------------------
    def __enter__(self):
        self._acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _acquire(self) -> None:
        if self._depth == 0 and not self._is_running():
            try:
                self._start()
            except LakevecError:
                raise
            except Exception as e:
                raise EngineError(f"cannot start the {self.name} engine: {type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}") from e
            self._started = True
        self._depth += 1

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._started:
            self._started = False
            try:
                self._stop()
            except Exception as e:  # never hide the job's own outcome behind a shutdown problem
                log.warning("stopping the %s engine failed: %s", self.name, e)

    # the engine interface ----------------------------------------------------------------------
    def map(self, fn, tasks, name: str = "job") -> list:
        """Run ``fn`` on every task record in parallel; return the results in task order."""
        tasks = list(tasks)
        if not tasks:
            return []
        if self.task_wrapper is not None:
            fn = self.task_wrapper(fn)
        self._acquire()
        try:
            log.info("%s: running %d task(s) on %s", name, len(tasks), self.name)
            return self._map(fn, tasks, name)
        finally:
            self._release()

    def task_bytes(self, total_bytes: int, default: int, minimum: int = 16 << 20) -> int:
        """Return a task size that gives every core about one task (at most ``default``), or the
        ``task_bytes`` option if set."""
        if self.fixed_task_bytes:
            return int(self.fixed_task_bytes)
        par = max(1, self.parallelism())
        # 10% slack: planners pack whole fragments/files greedily, and a total split exactly in `par`
        # shares would spill a sliver into an extra task (an extra wave with one core busy)
        want = int(-(-int(total_bytes) // par) * 1.1)
        return int(max(minimum, min(default, want)))
