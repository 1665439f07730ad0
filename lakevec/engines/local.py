"""The local engine: runs task records in this process, one after another (BLAS uses the cores)."""
from __future__ import annotations

from ..errors import EngineError, LakevecError


class LocalEngine:
    """Run tasks sequentially in-process; each task's kernels are multithreaded themselves."""

    name = "local"

    def __init__(self, **_):
        pass

    def map(self, fn, tasks, name: str = "job"):
        """Return ``[fn(t) for t in tasks]``, wrapping non-lakevec failures in EngineError."""
        from .base import task_id_of
        out = []
        for i, t in enumerate(tasks):
            try:
                out.append(fn(t))
            except LakevecError:
                raise
            except Exception as e:
                raise EngineError(f"{name}: task {task_id_of(t, i)} failed: {e}") from e
        return out
