"""What ``knn_join`` returns: the pairs (a pyarrow Table) with the join's report attached."""
from __future__ import annotations

import pyarrow as pa


class JoinResult:
    """The result of a join: ``.table`` (pyarrow: left_id, right_id, distance, rank, columns), ``.report``
    (a ``JoinReport``; ``.report.to_dict()`` for JSON) and, when written to ``output=``, ``.output`` (its URI;
    ``.table`` then reads the committed parts) and ``.skipped`` (True when an earlier run with the same
    idempotency key had already committed it).

    It behaves like its table: ``len(r)``, ``r.num_rows``, ``r.column("right_id")``, ``r.to_pandas()``,
    ``pa.table(r)`` and any other pyarrow.Table attribute go to ``r.table``.
    """

    def __init__(self, table: pa.Table | None, report, output: str | None = None, storage_options=None,
                 skipped: bool = False):
        self._table = table
        self.report = report
        self.output = output
        self.storage_options = storage_options
        self.skipped = skipped

    @property
    def table(self) -> pa.Table:
        if self._table is None and self.output is not None:
            from .output import read_output
            self._table = read_output(self.output, self.storage_options)
        return self._table

    @property
    def rows(self) -> int:
        return self.report.pairs if self._table is None else self._table.num_rows

    def to_arrow(self) -> pa.Table:
        return self.table

    def __arrow_c_stream__(self, requested_schema=None):
        return self.table.__arrow_c_stream__(requested_schema)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.table, name)

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, key):
        return self.table[key]

    def __eq__(self, other) -> bool:
        other = other.table if isinstance(other, JoinResult) else other
        return isinstance(other, pa.Table) and self.table.equals(other)

    __hash__ = None

    def __repr__(self) -> str:
        where = f", output={self.output!r}" + (", skipped" if self.skipped else "") if self.output else ""
        return f"JoinResult({self.report.pairs:,} pairs, plan={self.report.plan!r}{where})"
