"""``lakevec ingest TABLE SOURCES...``: append Parquet files to a table in one commit.

Sources are Parquet files, folders or globs, local or ``s3://`` (quote globs so the shell leaves them
alone). The table is created first when it is missing and ``--create`` or ``--dim`` is given (the
dimension is read from the first file's vector column when only ``--create`` is). Re-running the same
sources (same paths, sizes and modification times) commits nothing and says so; ``--idempotency-key``
names a batch explicitly (e.g. the pipeline run id).
"""
from __future__ import annotations

import argparse

from . import common

BAD_ROWS = ("raise", "skip", "quarantine")
METRICS = ("l2", "cosine", "dot")
ENGINES = ("local", "ray", "spark")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest", help="append Parquet files to a table (one commit, idempotent)",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lakevec ingest docs 's3://bucket/emb/day=2024-06-01/*.parquet' --dim 384 --metric cosine\n"
               "  lakevec ingest docs part-0.parquet part-1.parquet --on-bad-rows quarantine\n"
               "  lakevec --json ingest docs s3://bucket/emb/ --idempotency-key run-2024-06-01")
    p.add_argument("table", help="table name ([A-Za-z0-9_-], up to 128 characters)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="Parquet file, folder or glob (local or s3://)")
    p.add_argument("--create", action="store_true", help="create the table (and the lake) if missing")
    p.add_argument("--dim", type=int, help="vector dimension of a new table (implies --create)")
    p.add_argument("--metric", choices=METRICS, default=None, help="distance metric of a new table (default l2)")
    p.add_argument("--id-column", default="id", help="name of the id column in the sources (default: id)")
    p.add_argument("--vector-column", default="vector", help="name of the vector column (default: vector)")
    p.add_argument("--id-type", choices=("int64", "string"), default=None,
                   help="id type of a new table (default: from the first source file, else int64)")
    p.add_argument("--on-bad-rows", choices=BAD_ROWS, default="raise",
                   help="raise: write nothing if a row is bad (default); skip: drop bad rows; "
                        "quarantine: drop them and record them in the table's rejects")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="key of this batch (default: derived from the sources' paths, sizes, mtimes)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


def _first_file_schema(sources: list[str], storage_options):
    """Return the Arrow schema of the first source Parquet file."""
    from ..ingest.convert import open_parquet, resolve_files

    files = resolve_files(sources, storage_options)
    return open_parquet(files[0], storage_options).schema_arrow


def _infer_table_spec(args, lake) -> tuple[int, str]:
    """Return (dim, id_type) of a table to create, from the options or the first source file."""
    import pyarrow as pa

    from ..errors import SchemaError

    dim, id_type = args.dim, args.id_type
    if dim is not None and id_type is not None:
        return dim, id_type
    schema = _first_file_schema(args.sources, lake.storage_options)
    if id_type is None:
        f = schema.field(args.id_column) if args.id_column in schema.names else None
        id_type = "string" if f is not None and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)) \
            else "int64"
    if dim is None:
        if args.vector_column not in schema.names:
            raise SchemaError(f"cannot infer the dimension: vector column {args.vector_column!r} not in the first "
                              f"source's columns {schema.names}; pass --dim")
        t = schema.field(args.vector_column).type
        if pa.types.is_fixed_size_list(t):
            dim = t.list_size
        else:
            dim = _dim_from_first_row(args, lake)
    return dim, id_type


def _dim_from_first_row(args, lake) -> int:
    from ..errors import SchemaError
    from ..ingest.convert import iter_parquet, resolve_files

    src = resolve_files(args.sources, lake.storage_options)[0]
    for batch in iter_parquet(src, lake.storage_options, batch_rows=1, columns=[args.vector_column]):
        col = batch.column(0)
        for v in col:
            if v.is_valid:
                return len(v.values)
    raise SchemaError(f"cannot infer the dimension from {src.uri} (no non-null vector); pass --dim")


def open_or_create_table(args, lake, create: bool):
    """Return (table, created) for ``args.table``; create it when missing and ``create``."""
    from ..errors import InvalidArgumentError, TableNotFoundError

    try:
        t = lake.open_table(args.table)
    except TableNotFoundError:
        if not create:
            raise TableNotFoundError(f"table {args.table!r} not found in lake {lake.uri}; pass --create (and "
                                     "--dim/--metric) to create it") from None
        dim, id_type = _infer_table_spec(args, lake)
        return lake.create_table(args.table, dim=dim, metric=args.metric or "l2", id_type=id_type), True
    if args.dim is not None and args.dim != t.meta.dim:
        raise InvalidArgumentError(f"table {args.table!r} has dim={t.meta.dim}, but --dim {args.dim} was given")
    if args.metric is not None and args.metric != t.meta.metric:
        raise InvalidArgumentError(f"table {args.table!r} has metric={t.meta.metric}, "
                                   f"but --metric {args.metric} was given")
    return t, False


def run(args) -> dict:
    from ..ingest.convert import resolve_files

    common.require_engine(args.engine)
    create = bool(args.create or args.dim is not None)
    lake = common.open_lake(args, create=create)
    with common.progress(args, "resolving sources") as prog:
        files = resolve_files(args.sources, lake.storage_options)
        total = sum(f.size for f in files)
        prog.update(f"{len(files)} file(s), {common.fmt_bytes(total)}")
    table, created = open_or_create_table(args, lake, create)
    if created:
        common.note(args, f"created table {table.name!r} (dim={table.meta.dim}, metric={table.meta.metric}) "
                          f"in {lake.uri}")
    source = f"{len(files)} file(s), {common.fmt_bytes(total)}"
    with common.progress(args, f"ingesting into {table.name!r}") as step:
        step.update(source)
        r = common.call_with_progress(table.add, step, [f.uri for f in files], id_column=args.id_column,
                                      vector_column=args.vector_column, on_bad_rows=args.on_bad_rows,
                                      idempotency_key=args.idempotency_key, engine=args.engine)
        d = r.to_dict() if hasattr(r, "to_dict") else dict(vars(r))
        if d.get("skipped"):
            step.update(f"{source}: already ingested, nothing committed")
        else:  # the data fragments' bytes (lakevec's own small records are not counted)
            step.update(f"{d.get('rows_added', 0):,} rows, {common.fmt_bytes(d.get('bytes_written') or 0)} "
                        f"written -> version {d.get('version')}")
    out = {
        "table": table.name,
        "lake": lake.uri,
        "created": created,
        "committed": not d.get("skipped") and d.get("rows_added", 0) > 0,
        "files": len(files),
        "source_bytes": total,
        **d,
        "total_rows": table.count_rows(),
    }
    return out


def format_text(r: dict) -> str:
    from ..ingest.validate import group_problems

    lines = []
    if r.get("created"):
        lines.append(f"created table {r['table']!r}")
    if r.get("skipped"):
        lines.append(f"already ingested: these sources (key {r['key']}) were committed before; "
                     f"nothing new was committed (table {r['table']!r} stays at version {r['version']})")
    elif r.get("rows_added"):
        lines.append(f"ingested {r['rows_added']:,} rows from {r['files']} file(s) into {r['table']!r}: "
                     f"version {r['version']}, {common.fmt_bytes(r.get('bytes_written') or 0)} of data written")
    else:
        lines.append(f"no rows to add from {r['files']} file(s); nothing was committed "
                     f"(version {r['version']})")
    if r.get("rows_rejected"):
        problems = [p for p in r.get("problems") or [] if len(p) >= 4]
        lines.append(f"rejected {r['rows_rejected']:,} bad row(s)" + ("; reasons of the first ones:" if problems else ""))
        by_source: dict = {}
        for src, row, col, why in (p[:4] for p in problems):
            by_source.setdefault(src, []).append((row, col, why))
        for src, probs in by_source.items():
            for col, why, rows in group_problems(probs)[:5]:
                shown = ", ".join(str(x) for x in rows[:3]) + (f" and {len(rows) - 3:,} more" if len(rows) > 3 else "")
                lines.append(f"  {src} row{'s' if len(rows) > 1 else ''} {shown} ({col}): {why}")
    lines.append(f"rows in table: {r['total_rows']:,}   key: {r.get('key') or '-'}   "
                 f"time: {common.fmt_seconds(r.get('seconds') or 0)}")
    return "\n".join(lines)
