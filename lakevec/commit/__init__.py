"""The one commit protocol that every writer uses (ingestion, index builds, compaction, quarantine, join
outputs): workers write files (``fragments``), the driver commits once through ``protocol.commit`` with the
version it read, inside a ``job.WriteJob`` (lease, idempotency claim, cleanup that never deletes what a
version may reference). See ``protocol`` for the steps, ``claims`` for leases and claims, ``ids`` for the
id index, and ``lakevec.state`` for what a commit record holds and how readers rebuild a version's state.
"""
from .claims import live_leases, wait_while_running
from .fragments import FragmentSink, WrittenFiles, delete_written
from .job import WriteJob
from .protocol import AlreadyCommitted, Change, CommitResult, commit, find_txn, new_txn, not_committed

__all__ = ["AlreadyCommitted", "Change", "CommitResult", "FragmentSink", "WriteJob", "WrittenFiles", "commit",
           "delete_written", "find_txn", "live_leases", "new_txn", "not_committed",
           "wait_while_running"]
