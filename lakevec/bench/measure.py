"""Measurement helpers for the benchmark: peak memory, timers, recall, latency percentiles, summaries.

- ``PeakRSS(interval=0.005)``: context manager. On enter it records the process RSS (``baseline``), resets
  the kernel's high-water mark (``/proc/self/clear_refs`` <- 5, Linux; ignored elsewhere) and starts a thread
  sampling RSS with psutil every ``interval`` seconds. On exit: ``peak`` (bytes; the max of the samples and
  of the kernel's ``VmHWM`` when the reset worked, so short spikes between samples are not missed),
  ``delta = peak - baseline``, ``end`` (RSS at exit), ``samples``, and ``as_dict()``. Monitors may nest
  (an inner one passes the high-water mark to the outer ones before resetting it). RSS is the whole
  process: memory held by anything else in the process (other peers' indexes) is in the baseline.
- ``Timer``: ``with Timer() as t: ...; t.seconds``.  ``time_call(fn, *a, **kw) -> (result, seconds)``.
- ``summarize(samples) -> {"min", "median", "max", "n"}`` (None-safe: None values are ignored).
- ``recall_at_k(found_ids, true_ids, k) -> float``: mean over queries of |found[:k] & true[:k]| / k
  (``-1`` padding in ``found_ids`` never matches).  ``recall_per_query`` gives the per-query values.
- ``latency_percentiles(seconds, ps=(50, 95, 99)) -> {"p50_ms": ..., ...}``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Iterable, Sequence

import numpy as np

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dependency of the bench
    psutil = None


def current_rss() -> int:
    """Resident set size of this process in bytes."""
    if psutil is not None:
        return psutil.Process().memory_info().rss
    with open("/proc/self/statm") as f:  # pragma: no cover
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_ACTIVE: list = []  # PeakRSS monitors currently inside their block (nesting keeps outer peaks right)


class PeakRSS:
    """Peak resident memory of this process while the block runs (see module docstring)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.end = 0
        self.samples = 0
        self.hwm_used = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process() if psutil is not None else None

    def _rss(self) -> int:
        return self._proc.memory_info().rss if self._proc is not None else current_rss()

    def _run(self):
        while not self._stop.is_set():
            r = self._rss()
            if r > self.peak:
                self.peak = r
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.baseline = self._rss()
        self.peak = self.baseline
        if _ACTIVE:  # nested: hand the high-water mark so far to the outer monitors before resetting it
            hwm = _vm_hwm() or 0
            for outer in _ACTIVE:
                outer.peak = max(outer.peak, hwm)
        self.hwm_used = _reset_hwm()
        _ACTIVE.append(self)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="PeakRSS", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.end = self._rss()
        self.peak = max(self.peak, self.end)
        if self.hwm_used:
            hwm = _vm_hwm()
            if hwm is not None:
                self.peak = max(self.peak, hwm)
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        for outer in _ACTIVE:
            outer.peak = max(outer.peak, self.peak)

    @property
    def delta(self) -> int:
        return self.peak - self.baseline

    def as_dict(self) -> dict:
        return {"rss_baseline_bytes": self.baseline, "rss_peak_bytes": self.peak,
                "rss_delta_bytes": self.delta, "rss_end_bytes": self.end, "rss_samples": self.samples}


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (perf_counter)."""

    def __init__(self):
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def time_call(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def summarize(samples: Iterable[float | None]) -> dict:
    """``{"min", "median", "max", "n"}`` of the non-None samples (all None if there are none)."""
    vals = [float(v) for v in samples if v is not None]
    if not vals:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def recall_per_query(found_ids, true_ids, k: int) -> np.ndarray:
    """Per query, the fraction of the true top-k found in the first k returned ids."""
    found = np.asarray(found_ids)
    true = np.asarray(true_ids)
    if found.ndim == 1:
        found, true = found[None, :], np.atleast_2d(true)
    if len(found) != len(true):
        raise ValueError(f"found_ids has {len(found)} queries but true_ids has {len(true)}")
    if true.shape[1] < k:
        raise ValueError(f"ground truth has only {true.shape[1]} neighbours per query, need k={k}")
    out = np.empty(len(found))
    for i in range(len(found)):
        f = found[i, :k]
        f = f[f >= 0]
        out[i] = len(np.intersect1d(f, true[i, :k])) / k
    return out


def recall_at_k(found_ids, true_ids, k: int = 10) -> float:
    """Mean recall@k: |found[:k] & true[:k]| / k averaged over queries."""
    return float(recall_per_query(found_ids, true_ids, k).mean())


def latency_percentiles(seconds: Sequence[float], ps: Sequence[float] = (50, 95, 99)) -> dict:
    """Percentiles of per-query latencies, in milliseconds: ``{"p50_ms": ..., "p95_ms": ...}``."""
    a = np.asarray(list(seconds), dtype=np.float64)
    if a.size == 0:
        return {f"p{int(p) if float(p).is_integer() else p}_ms": None for p in ps}
    return {f"p{int(p) if float(p).is_integer() else p}_ms": float(np.percentile(a, p) * 1e3) for p in ps}


def fmt_bytes(n: float | None) -> str:
    """Human-readable byte count (``1.23 GiB``)."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


__all__ = ["PeakRSS", "Timer", "current_rss", "fmt_bytes", "latency_percentiles", "recall_at_k",
           "recall_per_query", "summarize", "time_call"]
