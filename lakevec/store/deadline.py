"""Deadlines on store calls: a store outage becomes a StorageError within ``store_timeout`` seconds.

One number per lake, the deadline ``D`` (seconds, at least 5): the storage option ``store_timeout``,
else ``$LAKEVEC_STORE_TIMEOUT``, else ``config.STORE_TIMEOUT`` (60). Every client lakevec uses is
configured from it so that one store call gives up within D once the store stops answering (stopped,
frozen, unreachable), while transient errors (a reset connection, a 503) are still retried:

===================  =========================================================================================
client               settings (D = 60 s gives the values in brackets)
===================  =========================================================================================
Lance (object_store) ``connect_timeout`` D/12 in [0.5 s, 5 s] (5 s); ``timeout`` D/3 (20 s: a whole request,
                     so a slow link still moves a 5 MB part); ``client_max_retries`` 3 while less than
                     ``client_retry_timeout`` D/10 (6 s) has passed: a hung request is not retried, a fast
                     failure is, with backoff; ``download_retry_count`` 1 (Lance's own re-read of a failed read,
                     default 3). A read fails within 2 x (D/10 + D/3) < D of the outage.
pyarrow S3           ``connect_timeout`` as above; ``request_timeout`` D/10 (6 s; an idle timeout: no byte for
                     that long); up to 3 attempts (fewer for a short D). One call makes at most two requests
                     (HEAD, GET); measured: one attempt costs the timeout rounded to whole seconds plus ~1 s.
botocore             ``connect_timeout`` as above; ``read_timeout`` D/10; the same number of attempts.
===================  =========================================================================================

Opening a Lance dataset lists and reads several objects, and Lance repeats a failed listing several
times on its own (measured: 7 attempts), so :func:`call_with_deadline` also puts a hard wall-clock
limit of D on it: the call runs in a helper thread and the caller gets a StorageError at D; the helper
ends by itself at its per-request timeouts. Transfers whose size grows with the data (a partition file,
a scan) are not cut at D: they fail within the per-request bounds once the store goes silent.

Measured against SeaweedFS (tests/store/test_outage.py), D = 10 s. Frozen (SIGSTOP: connections are
accepted, nothing answers): opening a table 10.0 s (the wall-clock limit), downloading a partition file
4.6 s, reading a small object 4.5 s, a conditional put 2.7 s. Dead (connections refused): 0.3-5.3 s.
Before (fixed settings), frozen: a Lance open 362 s, a small-object read 183 s, a conditional put 129 s.
A guarded call costs ~0.1 ms (the helper threads are reused); local lakes are not guarded.

"""
from __future__ import annotations

import math
import os
import queue
import threading
from dataclasses import dataclass

from ..config import STORE_TIMEOUT, STORE_TIMEOUT_ENV, STORE_TIMEOUT_OPTION
from ..errors import InvalidArgumentError, StorageError

MIN_STORE_TIMEOUT = 5.0  # the S3 SDKs count their timeouts in whole seconds: below this no bound holds


def _parse_seconds(value, source: str) -> float:
    try:
        s = float(str(value).strip().removesuffix("s"))
    except ValueError:
        s = float("nan")
    if not math.isfinite(s) or s < MIN_STORE_TIMEOUT:
        raise InvalidArgumentError(f"{source} must be a number of seconds >= {MIN_STORE_TIMEOUT:g}, got {value!r}")
    return s


def resolve_store_timeout(options=None) -> float:
    """Return the deadline in seconds: option ``store_timeout``, else ``$LAKEVEC_STORE_TIMEOUT``, else 60."""
    if options and options.get(STORE_TIMEOUT_OPTION) not in (None, ""):
        return _parse_seconds(options[STORE_TIMEOUT_OPTION], f"storage option {STORE_TIMEOUT_OPTION!r}")
    env = os.environ.get(STORE_TIMEOUT_ENV)
    if env:
        return _parse_seconds(env, f"${STORE_TIMEOUT_ENV}")
    return STORE_TIMEOUT


@dataclass(frozen=True)
class Deadline:
    """The per-client settings that keep one store call within ``seconds``."""

    seconds: float

    @property
    def connect(self) -> float:
        """Seconds to wait for a TCP/TLS connection."""
        return min(5.0, max(0.5, self.seconds / 12))

    @property
    def request(self) -> float:
        """Seconds a Lance request may take in all (connection, upload, download)."""
        return self.seconds / 3

    @property
    def idle(self) -> float:
        """Seconds a pyarrow or botocore request may go without receiving a byte."""
        return self.seconds / 10

    @property
    def attempts(self) -> int:
        """Attempts per pyarrow/botocore request: two requests (HEAD + GET) fit in D."""
        return max(1, min(3, int((self.seconds / 2) // (self.idle + 1.5))))

    def lance_options(self) -> dict:
        """object_store / Lance storage options (strings, as Lance expects)."""
        return {
            "connect_timeout": f"{int(self.connect * 1000)}ms",
            "timeout": f"{int(self.request * 1000)}ms",
            "client_max_retries": "3",
            "client_retry_timeout": str(max(1, int(self.seconds / 10))),
            "download_retry_count": "1",
        }

    def pyarrow_s3_kwargs(self) -> dict:
        """Keyword arguments of ``pyarrow.fs.S3FileSystem``."""
        import pyarrow.fs as pafs
        return {"connect_timeout": self.connect, "request_timeout": self.idle,
                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.attempts)}

    def botocore_config_kwargs(self) -> dict:
        """Keyword arguments of ``botocore.config.Config``."""
        return {"connect_timeout": self.connect, "read_timeout": self.idle,
                "retries": {"total_max_attempts": self.attempts, "mode": "standard"}}


class _Call:
    __slots__ = ("fn", "done", "value", "error")

    def __init__(self, fn):
        self.fn = fn
        self.done = threading.Event()
        self.value = None
        self.error = None


class _Runners:
    """Daemon threads that run calls under a deadline, reused when idle, one more whenever none is idle
    (a call stuck past its deadline keeps its thread until its own timeouts end it; nothing waits on it,
    not even the interpreter's exit). Reusing threads keeps a guarded call at tens of microseconds."""

    def __init__(self):
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, call: _Call) -> None:
        try:
            inbox = self._idle.get_nowait()
        except queue.Empty:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(inbox,), name="lakevec-store-call", daemon=True).start()
        inbox.put(call)

    def _work(self, inbox) -> None:
        while True:
            call = inbox.get()
            try:
                call.value = call.fn()
            except BaseException as e:  # handed to the caller
                call.error = e
            call.fn = None
            call.done.set()
            self._idle.put(inbox)


_RUNNERS = _Runners()
if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=lambda: globals().__setitem__("_RUNNERS", _Runners()))


def call_with_deadline(fn, seconds: float | None, what: str):
    """Return ``fn()``, or raise StorageError when it has not returned after ``seconds``.

    ``fn`` runs on a helper thread; on timeout it is left to end by itself (its requests have their
    own timeouts). Use it only for reads whose size does not grow with the data, and never for a write
    whose outcome matters (an abandoned write may still land). ``seconds`` None: call ``fn`` directly.
    """
    if seconds is None:
        return fn()
    call = _Call(fn)
    _RUNNERS.run(call)
    if not call.done.wait(seconds):
        raise StorageError(f"{what}: the store did not answer within {seconds:g} s (store_timeout; set the "
                           f"storage option {STORE_TIMEOUT_OPTION!r} or ${STORE_TIMEOUT_ENV} to change it)")
    if call.error is not None:
        raise call.error
    return call.value
