"""The first rows of a table fix its user columns in the same commit as the rows, never by an Overwrite.

``create_table`` creates the dataset empty with ``id``, ``vector``, ``_partition`` and the user columns it
was given. When it was given none and the first ingestion brings some, that ingestion writes its
fragments for the new columns and commits them with a Lance ``Merge`` (fragments + schema) on top of the
empty version it read, through the commit protocol with ``exact=True``: it commits only on exactly that
version. It cannot lose rows: Lance refuses to rebase a Merge over a concurrent Append, the protocol
then refuses to retry it, and a concurrent append of rows written for the old columns is refused once
the columns changed. After a lost race the ingestion reports a ``CommitConflictError`` (nothing
committed) unless the winner set the very same columns: then its fragments are appended as they are.
"""
from __future__ import annotations

import lance
import pyarrow as pa

from ..config import ID_COLUMN, PARTITION_COLUMN, VECTOR_COLUMN
from .validate import TableSpec


def table_spec(table, ds) -> TableSpec:
    """Return the validation spec of ``table`` at dataset version ``ds`` (user columns None while the
    table has neither user columns nor rows: the first rows fix them)."""
    user = [f for f in ds.schema if f.name not in (ID_COLUMN, VECTOR_COLUMN, PARTITION_COLUMN)]
    fixed = bool(user) or ds.count_rows() > 0
    m = table.meta
    return TableSpec(m.name, m.dim, m.metric, m.id_type, pa.schema(user) if fixed else None)


def user_fields(schema: pa.Schema) -> list:
    """The user columns of an input schema already renamed to id/vector."""
    return [f for f in schema if f.name not in (ID_COLUMN, VECTOR_COLUMN)]


def fix_user_columns(spec: TableSpec, input_schema: pa.Schema) -> tuple[TableSpec, bool]:
    """Return (spec with its user columns fixed, whether this ingestion sets the table's columns).

    The table's columns if it has them (or rows); else those of ``input_schema`` (renamed), committed with
    the rows (``first_rows_operation``)."""
    if spec.user_schema is not None:
        return spec, False
    user = user_fields(input_schema)
    new = TableSpec(spec.name, spec.dim, spec.metric, spec.id_type, pa.schema(user))
    return new, bool(user)


def first_rows_operation(fragments, spec: TableSpec):
    """The Lance operation that sets the table's columns and adds the first rows in one commit."""
    from lance.schema import LanceSchema
    return lance.LanceOperation.Merge(list(fragments), LanceSchema.from_pyarrow(spec.output_schema()))


def same_columns(table, spec: TableSpec) -> bool:
    """True if the table's latest schema is exactly the one ``spec`` writes (after a lost first-rows race)."""
    try:
        return table._open_latest().schema.equals(spec.output_schema())
    except Exception:
        return False
