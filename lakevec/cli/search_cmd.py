"""``lakevec search TABLE``: batch k-nearest-neighbour search of a file of queries (or random table rows).

Queries: ``--query-file`` ``.npy`` (a (m, d) or (d,) array), ``.fvecs``/``.bvecs`` (texmex format) or
``.parquet`` (column ``--query-column``, default ``vector``; its ``id`` column, if any, is carried into
the results as ``query_id``), local or ``s3://``. ``--random N`` uses N rows sampled from the table
itself (each should find itself: the summary reports that rate, a quick health check of the index).

Results have the columns ``query_index, id, distance, rank`` then ``--columns``; ``--output`` writes them
as Parquet (local or ``s3://``), otherwise a summary and the first rows are printed.
"""
from __future__ import annotations

import argparse
import io
import os

from . import common


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="batch k-NN search of a query file",
        description=__doc__.split("\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  lakevec search docs --query-file queries.npy -k 10 --output s3://bucket/hits.parquet\n"
               "  lakevec search docs --random 100 --nprobe 8 --filter \"lang = 'en'\" --columns lang,title\n"
               "  lakevec search docs --query-file q.fvecs --at-version 3   # time travel")
    p.add_argument("table", help="table name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--query-file", metavar="PATH", help="queries: .npy, .fvecs, .bvecs or .parquet (local or s3://)")
    src.add_argument("--random", type=int, metavar="N", help="use N random rows of the table as queries")
    p.add_argument("--query-column", default="vector", help="vector column of a Parquet query file (default: vector)")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default: 10)")
    p.add_argument("--nprobe", type=int, help="partitions probed per query (default: the index's calibrated value)")
    p.add_argument("--filter", metavar="SQL", help="SQL predicate on metadata columns, applied before scoring")
    p.add_argument("--columns", action="append", metavar="COLS", help="extra columns to return (comma-separated)")
    p.add_argument("--at-version", type=int, metavar="V", help="search version V of the table (time travel)")
    p.add_argument("--output", "-o", metavar="PATH", help="write all results as Parquet here (local or s3://)")
    p.add_argument("--show", type=int, default=10, metavar="N", help="result rows to print (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default: 0)")
    common.add_lake_options(p)
    p.set_defaults(func=run)


# -- query input -----------------------------------------------------------------------------------

def _read_bytes(path: str, storage_options) -> bytes:
    from ..errors import StorageError

    if path.startswith(("s3://", "s3a://")):
        from ..ingest.convert import file_store
        return file_store(path, storage_options).read_bytes(path.replace("s3a://", "s3://"))
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise StorageError(f"query file not found: {path}") from None
    except OSError as e:
        raise StorageError(f"cannot read query file {path}: {e.strerror or e}") from None


def read_queries(path: str, storage_options=None, column: str = "vector"):
    """Return (queries float32 (m, d), query ids or None) read from a .npy/.fvecs/.bvecs/.parquet file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..errors import InvalidArgumentError, SchemaError

    low = path.lower()
    raw = _read_bytes(path, storage_options)
    if low.endswith(".npy"):
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as e:
            raise InvalidArgumentError(f"{path}: not a numeric .npy array ({e})") from None
        if arr.dtype.kind not in "fiu" or arr.ndim not in (1, 2):
            raise InvalidArgumentError(f"{path}: expected a 1-D or 2-D numeric array, got {arr.dtype} {arr.shape}")
        return np.atleast_2d(arr).astype(np.float32), None
    if low.endswith((".fvecs", ".bvecs")):
        from ..bench.datasets import read_vecs
        return read_vecs(raw, low.rsplit(".", 1)[1], name=path), None
    if low.endswith((".parquet", ".pq")):
        try:
            t = pq.read_table(pa.BufferReader(raw), page_checksum_verification=True)
        except pa.ArrowException as e:
            raise InvalidArgumentError(f"{path}: not a readable Parquet file ({e})") from None
        if column not in t.column_names:
            raise SchemaError(f"{path}: query column {column!r} not found (columns: {t.column_names}); "
                              "use --query-column")
        col = t.column(column).combine_chunks()
        if col.null_count:
            raise InvalidArgumentError(f"{path}: column {column!r} has {col.null_count} null vector(s)")
        try:
            q = np.asarray(col.to_pylist() if not pa.types.is_fixed_size_list(col.type) else
                           col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size),
                           dtype=np.float32)
        except ValueError as e:
            raise InvalidArgumentError(f"{path}: vectors in {column!r} do not form a matrix ({e})") from None
        ids = t.column("id") if "id" in t.column_names and column != "id" else None
        return np.atleast_2d(q), ids
    raise InvalidArgumentError(f"query file {path}: unknown format; use .npy, .fvecs, .bvecs or .parquet")


def random_queries(table, n: int, seed: int = 0):
    """Return (vectors (n, d), ids) of ``n`` rows sampled from ``table`` (with replacement if n > rows)."""
    import numpy as np

    from ..config import ID_COLUMN, VECTOR_COLUMN
    from ..errors import InvalidArgumentError
    from ..search.reader import vectors_of

    ds = table._dataset()
    rows = ds.count_rows()
    if rows == 0:
        raise InvalidArgumentError(f"table {table.name!r} is empty: --random needs rows to sample")
    rng = np.random.default_rng(seed)
    pos = np.sort(rng.choice(rows, n, replace=n > rows))
    t = ds.take(pos.tolist(), columns=[ID_COLUMN, VECTOR_COLUMN])
    return np.array(vectors_of(t.column(VECTOR_COLUMN)), dtype=np.float32), t.column(ID_COLUMN)


# -- output ----------------------------------------------------------------------------------------

def write_parquet(table, path: str, storage_options=None) -> int:
    """Write ``table`` as Parquet to a local path or s3:// URI; return the bytes written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..errors import StorageError

    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    data = buf.getvalue().to_pybytes()
    if path.startswith(("s3://", "s3a://")):
        from ..ingest.convert import file_store
        uri = path.replace("s3a://", "s3://")
        file_store(uri, storage_options).write_bytes(uri, data)
    else:
        try:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            raise StorageError(f"cannot write results to {path}: {e.strerror or e}") from None
    return len(data)


def _preview(result, n: int, metric: str = "l2") -> list[dict]:
    """The first ``n`` result rows for printing: floats rounded to 4 places, long lists shortened.

    ``l2`` and ``cosine`` distances cannot be negative: float rounding of a self-match (about -1e-7, or
    more for large vectors) prints as 0, never ``-0.0000``."""
    rows = result.slice(0, max(0, n)).to_pylist()
    for r in rows:
        for k, v in list(r.items()):
            if isinstance(v, float):
                if k == "distance" and metric != "dot":
                    v = max(v, 0.0)
                r[k] = round(v, 4) + 0.0  # + 0.0 turns -0.0 into 0.0
            elif isinstance(v, (list, bytes)) and len(v) > 8:
                r[k] = f"<{len(v)} values>"
    return rows


def run(args) -> dict:
    import time

    import numpy as np
    import pyarrow as pa

    from ..checks import positive_int

    positive_int(args.k, "-k")
    positive_int(args.nprobe, "--nprobe", optional=True)
    positive_int(args.random, "--random", optional=True)
    positive_int(args.at_version, "--at-version", optional=True)
    lake = common.open_lake(args)
    table = lake.open_table(args.table)
    if args.at_version is not None:
        table = table.checkout(args.at_version)
    qids = None
    with common.progress(args, "reading queries") as prog:
        if args.query_file:
            q, qids = read_queries(args.query_file, lake.storage_options, args.query_column)
            source = args.query_file
        else:
            q, qids = random_queries(table, args.random, args.seed)
            source = f"{args.random} random rows of {table.name!r}"
        prog.update(f"{len(q):,} queries of dim {q.shape[1]}")
    columns = common.split_list(args.columns)
    t0 = time.time()
    with common.progress(args, f"searching {table.name!r} ({len(q):,} queries, k={args.k})"):
        result = table.search(q, k=args.k, nprobe=args.nprobe, filter=args.filter, columns=columns)
    seconds = time.time() - t0
    if qids is not None and args.query_file:
        result = result.append_column("query_id", qids.take(pa.array(result.column("query_index").to_numpy())))
    st = common.search_stats(table.last_search_stats)
    out = {
        "table": table.name,
        "lake": lake.uri,
        "version": (table.last_search_stats or {}).get("version", table.version),
        "queries": int(len(q)),
        "query_source": source,
        "k": args.k,
        "nprobe": st["nprobe"],
        "filter": args.filter,
        "result_rows": result.num_rows,
        "seconds": round(seconds, 4),
        "queries_per_second": round(len(q) / seconds, 1) if seconds > 0 else None,
        **{k: v for k, v in st.items() if k not in ("nprobe", "seconds")},
    }
    if args.random is not None and not args.filter:
        ids = result.column("id").to_pylist()
        qi = result.column("query_index").to_numpy()
        own = qids.to_pylist()
        found = {(int(a), b) for a, b in zip(qi, ids)}
        out["self_found_rate"] = round(float(np.mean([(i, own[i]) in found for i in range(len(own))])), 4)
    if args.output:
        out["output"] = args.output
        with common.progress(args, f"writing {result.num_rows:,} rows to {args.output}"):
            out["output_bytes"] = write_parquet(result, args.output, lake.storage_options)
    out["first_rows"] = _preview(result, args.show, table.meta.metric)
    return out


def format_text(r: dict) -> str:
    from .main import format_rows

    head = (f"searched {r['table']!r} (version {r['version']}): {r['queries']:,} queries, k={r['k']}, "
            f"nprobe={r['nprobe'] if r['nprobe'] is not None else 'exact'}"
            + (f", filter {r['filter']!r}" if r.get("filter") else ""))
    lines = [head, f"{r['result_rows']:,} result rows in {common.fmt_seconds(r['seconds'])} "
                   f"({r['queries_per_second'] or '-'} queries/s)"]
    if r.get("partitions_read") is not None:
        lines.append(f"read {r['partitions_read']} partition(s) once for all queries: "
                     f"{r['rows_read'] if r['rows_read'] is not None else '-'} rows, "
                     f"{common.fmt_bytes(r['bytes_read'])} in {r['requests'] if r['requests'] is not None else '-'}"
                     f" requests" + (f", cache hit ratio {r['cache_hit_ratio']:.0%}" if r.get("cache_hit_ratio") else ""))
    if "self_found_rate" in r:
        lines.append(f"each random query found itself in its top {r['k']}: {r['self_found_rate']:.1%}")
    if r.get("output"):
        lines.append(f"wrote {r['result_rows']:,} rows ({common.fmt_bytes(r['output_bytes'])}) to {r['output']}")
    if r.get("first_rows"):
        lines.append(f"first {len(r['first_rows'])} rows:")
        lines += ["  " + x for x in format_rows(r["first_rows"]).splitlines()]
    return "\n".join(lines)
