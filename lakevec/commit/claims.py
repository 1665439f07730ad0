"""Claims and leases: conditional creates that let concurrent jobs agree without a lock server.

**Job leases** (``_lakevec/leases/<job>.json``). Every writing job holds one from before it writes its
first file until it has committed (or failed). A heartbeat thread renews ``expires_at``; ``vacuum``
never deletes an unreferenced file written after the start of a live lease, so a job that runs longer
than the retention period keeps its files. A killed job's lease simply expires.

**Idempotency claims** (``_lakevec/claims/<name>/<attempt>.json``). Before doing any work, an ingestion
with a key (given, or derived from its source files) claims the key with a conditional create
(``If-None-Match: *``): of N concurrent runs with the same key exactly one creates attempt 0 and does the
work; the others wait for it to commit (then return "skipped"), to fail (it deletes its claim: the next
waiter claims attempt 1 and does the work), or to die (its heartbeat stops, the claim expires, a waiter
claims the next attempt). A claim never replaces another (each attempt is a new name), so two waiters
cannot both take over the same attempt.

Claims prevent duplicate *work*; they are not what makes a commit exactly-once. The commit protocol
re-checks, against every commit since the version a job read, that its key, source files and ids were
not committed meanwhile (``lakevec.commit.protocol``), so a job that outlived its claim (paused longer than
the lease) still cannot commit twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from ..config import META_DIR
from ..errors import CommitConflictError, StorageError

log = logging.getLogger("lakevec.commit")

LEASE_SECONDS = float(os.environ.get("LAKEVEC_LEASE_SECONDS", 120))
HEARTBEAT_FRACTION = 0.25  # renew after this fraction of the lease
CLAIM_WAIT_SECONDS = float(os.environ.get("LAKEVEC_CLAIM_WAIT_SECONDS", 3600))
LEASES_DIR = "leases"
CLAIMS_DIR = "claims"


def _now() -> float:
    return time.time()


def claim_name(key: str) -> str:
    """A store-safe folder name for an idempotency key (keys are [A-Za-z0-9_.:=-]; ':' is hashed away)."""
    safe = "".join(c if c.isalnum() or c in "_.-=" else "_" for c in key)[:80]
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class JobLease:
    """A running job's lease, renewed by a heartbeat thread until ``release``; also renews claims."""

    def __init__(self, store, table_loc, job: str, kind: str, lease_seconds: float | None = None):
        self.store = store
        self.loc = table_loc
        self.job = job
        self.kind = kind
        self.lease_seconds = float(LEASE_SECONDS if lease_seconds is None else lease_seconds)
        self.uri = table_loc.join(META_DIR, LEASES_DIR, f"{job}.json")
        self.started_at = _now()
        self._claims: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def body(self) -> dict:
        return {"job": self.job, "kind": self.kind, "started_at": self.started_at,
                "expires_at": _now() + self.lease_seconds, "host": socket.gethostname(), "pid": os.getpid()}

    def __enter__(self) -> "JobLease":
        self.store.write_json(self.uri, self.body())
        self._thread = threading.Thread(target=self._beat, name=f"lakevec-lease-{self.job[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def track(self, uri: str, body: dict) -> None:
        """Renew the claim object at ``uri`` (this job's own attempt) with the lease."""
        with self._lock:
            self._claims[uri] = body

    def untrack(self, uri: str) -> None:
        with self._lock:
            self._claims.pop(uri, None)

    def _beat(self) -> None:
        every = max(0.5, self.lease_seconds * HEARTBEAT_FRACTION)
        while not self._stop.wait(every):
            try:
                self.store.write_json(self.uri, self.body())
                with self._lock:
                    claims = dict(self._claims)
                for uri, body in claims.items():
                    self.store.write_json(uri, {**body, "expires_at": _now() + self.lease_seconds})
            except Exception as e:  # the store is down: the job will fail on its own calls
                log.warning("lease %s: heartbeat failed: %s", self.job, e)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease (best effort: an undeleted lease expires)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.store.delete(self.uri)
        except Exception:
            pass


def live_leases(store, table_loc, now: float | None = None) -> list[dict]:
    """Return the bodies of the table's leases that have not expired."""
    now = _now() if now is None else now
    out = []
    folder = table_loc.join(META_DIR, LEASES_DIR)
    for info in store.list(folder):
        if not info.base_name.endswith(".json"):
            continue
        try:
            body = store.read_json(f"{folder}/{info.base_name}")
        except StorageError as e:
            if "not found" in str(e):
                continue  # released meanwhile
            raise
        if float(body.get("expires_at", 0)) > now:
            out.append(body)
    return out


def wait_while_running(store, table_loc, kinds: tuple, own_job: str, timeout: float = 300.0,
                       poll: float = 0.25) -> float:
    """Wait until no other job of ``kinds`` holds a live lease on the table (or ``timeout`` seconds have
    passed); return the seconds waited. Jobs that rewrite the same fragments use it with the lease of their
    own already taken: a job that starts later sees that lease and stays away (compaction yields to index
    builds), and this one waits for those that started first, so the two never rewrite the same version."""
    t0 = time.time()
    waited = False
    while True:
        busy = [b for b in live_leases(store, table_loc) if b.get("kind") in kinds and b.get("job") != own_job]
        if not busy or time.time() - t0 >= timeout:
            return time.time() - t0 if waited else 0.0
        if not waited:
            log.info("waiting for %d running %s job(s) to finish", len(busy), "/".join(kinds))
        waited = True
        time.sleep(poll)


@dataclass
class Claim:
    """An acquired claim: the attempt object this job created."""

    uri: str
    body: dict

    def release(self, store, lease: JobLease | None = None) -> None:
        """Delete the claim (the job failed before committing: the next waiter may go)."""
        if lease is not None:
            lease.untrack(self.uri)
        try:
            store.delete(self.uri)
        except Exception:  # the store is down: other processes wait for it to expire; this one knows
            _ABANDONED.add(self.uri)


_ABANDONED: set = set()  # claims this process released but could not delete (treated as expired here)


def acquire(store, table_loc, key: str, owner: str, committed, lease: JobLease | None = None,
            wait_seconds: float = CLAIM_WAIT_SECONDS, poll: float = 0.5):
    """Claim idempotency ``key`` for job ``owner``.

    Returns ``("claimed", Claim)`` when this job must do the work, or ``("committed", version)`` when
    another run committed the key (``committed()`` returns the version that did, or None). Raises
    CommitConflictError when another live run still holds the claim after ``wait_seconds``.
    """
    folder = table_loc.join(META_DIR, CLAIMS_DIR, claim_name(key))
    deadline = _now() + wait_seconds
    waited = False
    while True:
        v = committed()
        if v is not None:
            return "committed", v
        names = sorted(n for n in store.list_names(folder) if n.endswith(".json"))
        attempt = int(names[-1].split(".")[0]) if names else -1
        holder = None
        if attempt >= 0:
            try:
                holder = store.read_json(f"{folder}/{names[-1]}")
            except StorageError as e:
                if "not found" not in str(e):
                    raise
                holder = None  # released between the LIST and the GET
        if holder is None or float(holder.get("expires_at", 0)) < _now() or f"{folder}/{names[-1]}" in _ABANDONED:
            nxt = attempt + 1  # a new name: a claim never replaces another
            body = {"key": key, "owner": owner, "attempt": nxt, "claimed_at": _now(),
                    "expires_at": _now() + (lease.lease_seconds if lease else float(LEASE_SECONDS))}
            uri = f"{folder}/{nxt:06d}.json"
            if store.put_if_absent(uri, json.dumps(body, sort_keys=True).encode()):
                if holder is not None:
                    log.warning("ingestion key %s: the claim of %s expired; taking over (attempt %d)", key,
                                holder.get("owner"), nxt)
                if lease is not None:
                    lease.track(uri, body)
                return "claimed", Claim(uri, body)
            continue  # someone else took this attempt: look again
        if holder.get("owner") == owner:
            return "claimed", Claim(f"{folder}/{names[-1]}", holder)
        if _now() > deadline:
            raise CommitConflictError(
                f"ingestion key {key!r} is being ingested by another run ({holder.get('owner')}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('claimed_at', 0)))}); nothing "
                "was committed by this run; retry later")
        if not waited:
            log.info("ingestion key %s is being ingested by another run; waiting for it", key)
            waited = True
        time.sleep(poll)
