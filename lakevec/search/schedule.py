"""The schedule of a grouped search: worker threads that read a visit's rows and score them.

Small GEMMs (a few hundred queries x ~1k rows) run ~10x faster on one BLAS thread than on
OpenBLAS's thread pool, so the search limits BLAS to one thread and parallelises across
partitions instead: each worker reads (I/O, GIL released) and scores (BLAS, GIL released) one
visit at a time into its own TopK; the TopKs are merged at the end. A bounded window of visits is
in flight, so memory stays at a few partitions.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ..config import SEARCH_PREFETCH, SEARCH_THREADS


_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(kind: str, size: int) -> ThreadPoolExecutor:
    """Return a process-wide thread pool (reused across searches: thread start-up costs ~ms per call)."""
    key = (kind, size, os.getpid())  # a forked child must not reuse its parent's (dead) threads
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"lakevec-{kind}")
            _POOLS[key] = pool
        return pool


_BLAS = None


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread inside the block (no-op if threadpoolctl is unavailable)."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()  # inspecting the loaded libraries is slow: do it once
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _BLAS = False
    if _BLAS is False:
        yield
        return
    with _BLAS.limit(limits=1, user_api="blas"):
        yield


def run_pipeline(items, read, score, make_state, workers: int = SEARCH_THREADS,
                 io_threads: int = SEARCH_PREFETCH, window: int | None = None):
    """Read items on ``io_threads`` threads and score them on ``workers`` threads; return the states.

    ``read(item) -> block`` does I/O; ``score(item, block, state)`` accumulates into a per-worker
    ``state`` made by ``make_state()``, so scoring needs no locks. At most ``window`` items are read
    but not yet scored (bounded memory); the first error raised by a read or a score is re-raised.
    """
    items = list(items)
    states: list = []
    if not items:
        return states
    if workers <= 1 and io_threads <= 1:
        st = make_state()
        states.append(st)
        for it in items:
            score(it, read(it), st)
        return states
    local = threading.local()
    lock = threading.Lock()

    def call_score(item, block):
        st = getattr(local, "state", None)
        if st is None:
            st = make_state()
            local.state = st
            with lock:
                states.append(st)
        score(item, block, st)

    window = window or (workers + io_threads + 1)
    source = iter(items)
    io_pool = shared_pool("read", max(1, io_threads))
    cpu_pool = shared_pool("score", max(1, workers))
    reads: dict = {}
    scores: set = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(reads) + len(scores) < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                reads[io_pool.submit(read, item)] = item
            if not reads and not scores:
                break
            done, _ = wait(set(reads) | scores, return_when=FIRST_COMPLETED)
            for f in done:
                if f in reads:
                    item = reads.pop(f)
                    scores.add(cpu_pool.submit(call_score, item, f.result()))
                else:
                    scores.discard(f)
                    f.result()
    except BaseException:
        # never leave work running on the shared pools after we return
        for f in list(reads) + list(scores):
            f.cancel()
        wait(list(reads) + list(scores))
        raise
    return states
