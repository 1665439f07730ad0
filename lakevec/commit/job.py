"""``WriteJob``: the life of one writing job around the commit protocol.

    with WriteJob(table, "ingest", key=key) as job:
        if job.done is not None:          # another run committed this key: nothing to do
            return skipped(job.done)
        state = job.state                 # the version the job reads (after its claim)
        ... tasks write files; job.track(written) / job.track_object(uri) ...
        result = job.commit(Change(...), state, "committing rows to table 'docs'")

On entry it takes a lease (vacuum keeps every file written after a live lease started) and, with a key,
the key's claim (``claims.acquire``: concurrent runs with the same key wait for one another). On exit
without a commit it deletes what it wrote only when nothing can have been committed: the failure came
before the commit, or the protocol says ``not_committed``. An uncertain outcome keeps the files (vacuum
removes them if no version references them). The claim is released unless the job committed.
"""
from __future__ import annotations

import logging

from ..config import INDEX_DIR, META_DIR
from ..errors import LakevecError
from .claims import JobLease, acquire
from .fragments import WrittenFiles, delete_written
from .protocol import AlreadyCommitted, Change, CommitResult, commit, new_txn, not_committed

log = logging.getLogger("lakevec.commit")


class WriteJob:
    """See the module docstring. ``table`` is a lakevec Table (duck-typed: see ``protocol.commit``)."""

    def __init__(self, table, kind: str, key: str | None = None, txn: str | None = None, ds=None):
        self.table = table
        self.kind = kind
        self.key = key
        self.txn = txn or new_txn()
        self.lease = JobLease(table.store, table.loc, self.txn, kind)
        self.claim = None
        self.done: int | None = None  # version that committed the key (another run), if so
        self.state = None
        self.ds = ds  # a version the caller just opened (no claim to wait for): read it, not the latest again
        self.result: CommitResult | None = None
        self._written: list[WrittenFiles] = []
        self._objects: list[str] = []
        self._uris: list[str] = []
        self._commit_started = False

    # -- life ------------------------------------------------------------------------------------
    def __enter__(self) -> "WriteJob":
        self.lease.__enter__()
        try:
            if self.key is not None:
                status, value = acquire(self.table.store, self.table.loc, self.key, self.txn,
                                        committed=self._key_committed, lease=self.lease)
                if status == "committed":
                    self.done = value
                else:
                    self.claim = value
            if self.ds is None or self.key is not None:
                self.refresh()
            else:
                self.state = self.table.states.state_at(self.ds)
        except BaseException:
            self._release()
            raise
        return self

    def refresh(self):
        """Re-open the latest version; return (dataset, state)."""
        self.ds = self.table._open_latest()
        self.state = self.table.states.state_at(self.ds)
        return self.ds, self.state

    def _key_committed(self):
        ds = self.table._open_latest()
        return self.table.states.state_at(ds).keys.get(self.key)

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.result is None and exc is not None:
                if not self._commit_started or not_committed(exc):
                    self.cleanup()
                else:
                    log.warning("%s job %s: the outcome of its commit is unknown; its files are kept", self.kind,
                                self.txn)
        finally:
            self._release()
        return False

    def _release(self) -> None:
        if self.claim is not None and self.result is None:
            self.claim.release(self.table.store, self.lease)
        self.lease.release()

    # -- what the job wrote ------------------------------------------------------------------------
    def track(self, written: WrittenFiles) -> None:
        """Remember data files the job wrote (deleted if the job ends without a commit)."""
        self._written.append(written)

    def track_object(self, rel_path: str) -> None:
        """Remember a lakevec object (relative to ``_lakevec/``) the job wrote."""
        self._objects.append(rel_path)

    def track_index(self, index_id: str) -> None:
        """Remember the objects of a new index (deleted if the job ends without a commit)."""
        for suffix in ("json", "centroids.npy", "calib.npz"):
            self._uris.append(self.table.loc.join(INDEX_DIR, f"{index_id}.{suffix}"))

    def cleanup(self) -> None:
        """Delete everything the job wrote (only when nothing of it can have been committed)."""
        for w in self._written:
            delete_written(self.table.store, self.table.data_uri, w)
        uris = [self.table.loc.join(META_DIR, rel) for rel in self._objects + [f"commits/{self.txn}.json"]]
        for uri in uris + self._uris:
            try:
                self.table.store.delete(uri)
            except LakevecError:
                pass  # vacuum removes it later

    # -- the commit -----------------------------------------------------------------------------
    def commit(self, change: Change, state, what: str) -> CommitResult:
        """Commit ``change`` (its txn is this job's) on top of ``state``; remember the result."""
        change.txn = self.txn
        if self.key is not None and self.key not in change.keys:
            change.keys.append(self.key)
        self._commit_started = True
        self.result = commit(self.table, change, state, what)
        self.table._invalidate()
        return self.result


__all__ = ["WriteJob", "AlreadyCommitted", "Change", "CommitResult", "new_txn", "not_committed"]
