"""Quarantined rows (``on_bad_rows="quarantine"``): written with their ingestion's commit, atomically.

Each ingestion that quarantines rows writes ``_lakevec/rejects/<txn>.parquet`` before its commit and
names it in its commit record, so the rejects become visible in the same commit as the good rows (or
not at all). ``Table.rejects()`` reads the files the version's state lists.
"""
from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import META_DIR
from ..errors import StorageError
from ..state import REJECTS_DIR

REJECTS_SCHEMA = pa.schema([
    pa.field("ingest_key", pa.string()), pa.field("source", pa.string()), pa.field("row", pa.int64()),
    pa.field("id", pa.string()), pa.field("reason", pa.string()), pa.field("rejected_at", pa.float64()),
])


def rejects_path(txn: str) -> str:
    return f"{REJECTS_DIR}/{txn}.parquet"


def write_rejects_file(table, txn: str, key: str | None, rejects: list) -> str:
    """Write quarantined rows (source, row, id, reason) as the rejects file of ``txn``; return its path
    relative to ``_lakevec/``."""
    now = time.time()
    t = pa.table({
        "ingest_key": [key or ""] * len(rejects),
        "source": [r[0] for r in rejects],
        "row": [int(r[1]) for r in rejects],
        "id": [r[2] for r in rejects],
        "reason": [r[3] for r in rejects],
        "rejected_at": [now] * len(rejects),
    }, schema=REJECTS_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(t, buf, write_page_checksum=True)
    rel = rejects_path(txn)
    table.store.write_bytes(table.loc.join(META_DIR, rel), buf.getvalue())
    return rel


def read_rejects(table, state) -> pa.Table:
    """Return the quarantined rows listed by ``state`` (a TableState), oldest commit first."""
    if state is None or not state.rejects:
        return REJECTS_SCHEMA.empty_table()
    parts = []
    for rel in state.rejects:
        uri = table.loc.join(META_DIR, rel)
        try:
            raw = table.store.read_bytes(uri)
        except StorageError as e:
            raise StorageError(f"the quarantine file {uri} of table {table.name!r} cannot be read: {e}") from e
        parts.append(pq.read_table(io.BytesIO(raw)).cast(REJECTS_SCHEMA))
    return pa.concat_tables(parts)
