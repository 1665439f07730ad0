"""Validate and normalise one record batch against a table's spec, row by row.

Batch-level problems (a missing column, a vector column of strings, an id column of the wrong
type, user columns that drift from the table's schema) raise at once. Row-level problems (null
or duplicate ids, null vectors, wrong dimension, null elements, NaN/Inf, zero vectors in a cosine
table) are returned as ``(row, column, reason)`` so the caller can raise, skip or quarantine.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..arrays import unique
from ..config import ID_COLUMN, PARTITION_COLUMN, VECTOR_COLUMN
from ..errors import SchemaError

FIRST_ROW_MEMORY = 1_000_000  # ids whose first row number is remembered for duplicate messages


@dataclass(frozen=True)
class TableSpec:
    """What a batch is validated against: picklable, small (sent to engine tasks)."""

    name: str
    dim: int
    metric: str
    id_type: str  # "int64" | "string"
    user_schema: pa.Schema | None  # None until the first rows fix the user columns

    def output_schema(self, user_schema: pa.Schema | None = None) -> pa.Schema:
        """Return the Lance schema of the table: id, vector, user columns, _partition."""
        us = user_schema if user_schema is not None else (self.user_schema or pa.schema([]))
        id_t = pa.int64() if self.id_type == "int64" else pa.string()
        fields = [pa.field(ID_COLUMN, id_t, nullable=False),
                  pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), self.dim), nullable=False)]
        fields += list(us)
        fields.append(pa.field(PARTITION_COLUMN, pa.int32(), nullable=False))
        return pa.schema(fields)


@dataclass
class Checked:
    """A validated batch: the good rows (canonical types), and the problems of the bad ones."""

    good: pa.RecordBatch | None
    problems: list = field(default_factory=list)  # [(row, column, reason)], row = global row number
    bad_rows: list = field(default_factory=list)  # [(row, id repr, reason)] for quarantine
    vectors: np.ndarray | None = None  # float32 (n_good, dim) view of the good vectors


class IdTracker:
    """Detects duplicate ids within one ingestion and against ids already in the table."""

    def __init__(self, id_type: str, existing=None):
        """``existing``: the ids already in the table: an array, or an index answering ``contains(ids)``
        (``lakevec.commit.ids.IdIndex``: reads only the id runs the checked ids can overlap)."""
        self.id_type = id_type
        self._seen_chunks: list = []  # [(sorted ids, their global rows)] of this ingestion
        self._seen_str: set = set()
        self._first_row: dict = {}
        self._index = existing if hasattr(existing, "contains") else None
        if self._index is None and existing is not None and len(existing):
            if id_type == "int64":
                self._existing = unique(np.asarray(existing, dtype=np.int64))
            else:
                self._existing_str = set(existing)
        if not hasattr(self, "_existing"):
            self._existing = np.empty(0, dtype=np.int64)
        if not hasattr(self, "_existing_str"):
            self._existing_str = set()

    def _in_table(self, ids) -> np.ndarray:
        if self._index is not None:
            return self._index.contains(ids)
        if self.id_type == "int64":
            return _isin_sorted(ids, self._existing)
        return np.fromiter((v in self._existing_str for v in ids), dtype=bool, count=len(ids))

    def seen_ids(self) -> np.ndarray:
        """Return every id this tracker accepted (int64 sorted, or an object array of strings)."""
        if self.id_type == "int64":
            chunks = [c[0] for c in self._seen_chunks if len(c[0])]
            return np.sort(np.concatenate(chunks)) if chunks else np.empty(0, dtype=np.int64)
        return np.asarray(sorted(self._seen_str), dtype=object)

    def check(self, ids, rows: np.ndarray) -> dict[int, str]:
        """Return {row: reason} for duplicate ids among ``ids`` (nulls already removed) and remember them."""
        bad: dict[int, str] = {}
        if self.id_type == "int64":
            ids = np.asarray(ids, dtype=np.int64)
            in_table = self._in_table(ids)
            in_seen, seen_row = self._lookup_seen(ids)
            order = np.argsort(ids, kind="stable")
            s = ids[order]
            dup_within = np.zeros(len(ids), dtype=bool)
            if len(s) > 1:
                same = s[1:] == s[:-1]
                dup_within[order[1:][same]] = True
            keep = ~(in_table | in_seen | dup_within)
            bad_idx = np.flatnonzero(~keep)
            if len(bad_idx):
                # first occurrence in this batch of every id: the start of its run in sorted order
                run_start = np.r_[True, s[1:] != s[:-1]] if len(s) else np.zeros(0, dtype=bool)
                start_pos = np.maximum.accumulate(np.where(run_start, np.arange(len(s)), 0))
                first_in_batch = np.empty(len(ids), dtype=np.int64)
                first_in_batch[order] = order[start_pos]
            for i in bad_idx:
                v = int(ids[i])
                if in_table[i]:
                    bad[int(rows[i])] = f"duplicate id {v}: already in the table"
                else:
                    first = int(seen_row[i]) if in_seen[i] else int(rows[first_in_batch[i]])
                    bad[int(rows[i])] = f"duplicate id {v} (also at row {first})"
            # remember new ids with their rows (sorted chunks: vectorised lookups, no per-row Python)
            kept = np.flatnonzero(keep)
            o = np.argsort(ids[kept], kind="stable")
            self._seen_chunks.append((ids[kept][o], np.asarray(rows)[kept][o]))
            # LSM-style: merge the newest chunk into its predecessor while they are of similar size, so
            # there are O(log n) chunks (cheap lookups) and each id is re-sorted O(log n) times.
            ch = self._seen_chunks
            while len(ch) > 1 and 2 * len(ch[-1][0]) >= len(ch[-2][0]):
                (a_ids, a_rows), (b_ids, b_rows) = ch[-2], ch[-1]
                cat_ids = np.concatenate([a_ids, b_ids])
                cat_rows = np.concatenate([a_rows, b_rows])
                o = np.argsort(cat_ids, kind="stable")
                ch[-2:] = [(cat_ids[o], cat_rows[o])]
        else:
            in_table = self._in_table(ids)
            for i, v in enumerate(ids):
                if in_table[i]:
                    bad[int(rows[i])] = f"duplicate id {v!r}: already in the table"
                elif v in self._seen_str:
                    bad[int(rows[i])] = f"duplicate id {v!r} (also at row {self._first_row.get(v, '?')})"
                else:
                    self._seen_str.add(v)
                    if len(self._first_row) < FIRST_ROW_MEMORY:
                        self._first_row[v] = int(rows[i])
        return bad


    def _lookup_seen(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (seen before in this ingestion, row where it was first seen) for int ids."""
        found = np.zeros(len(ids), dtype=bool)
        first = np.full(len(ids), -1, dtype=np.int64)
        for s_ids, s_rows in self._seen_chunks:
            if not len(s_ids):
                continue
            pos = np.searchsorted(s_ids, ids)
            pos[pos == len(s_ids)] = 0
            hit = (s_ids[pos] == ids) & ~found
            first[hit] = s_rows[pos[hit]]
            found |= hit
        return found, first


def _isin_sorted(x: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    if len(sorted_ref) == 0 or len(x) == 0:
        return np.zeros(len(x), dtype=bool)
    pos = np.searchsorted(sorted_ref, x)
    pos[pos == len(sorted_ref)] = 0
    return sorted_ref[pos] == x


def check_batch(batch: pa.RecordBatch, spec: TableSpec, row_offset: int, where: str,
                ids: IdTracker | None) -> Checked:
    """Validate ``batch`` (canonical column names) and return its good rows and row problems."""
    n = batch.num_rows
    rows = np.arange(row_offset, row_offset + n)
    reasons: dict[int, tuple[str, str]] = {}  # local row -> (column, reason); first reason wins

    if PARTITION_COLUMN in batch.schema.names:
        raise SchemaError(f"{where}: column {PARTITION_COLUMN!r} is reserved by lakevec", source=where)
    id_arr = _check_id_type(batch.column(ID_COLUMN), spec, where)
    vec, vec_bad = _check_vectors(batch.column(VECTOR_COLUMN), spec, where)
    for i, r in vec_bad.items():
        reasons.setdefault(i, (VECTOR_COLUMN, r))
    id_null = np.asarray(id_arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    for i in np.flatnonzero(id_null):
        reasons.setdefault(int(i), (ID_COLUMN, "null id"))
    user_cols = _check_user_columns(batch, spec, where)

    if ids is not None:
        valid_idx = np.flatnonzero(~id_null)
        if len(valid_idx):
            vals = (id_arr if len(valid_idx) == n else id_arr.take(pa.array(valid_idx))).to_numpy(zero_copy_only=False)
            for glob_row, why in ids.check(vals, rows[valid_idx]).items():
                reasons.setdefault(int(glob_row - row_offset), (ID_COLUMN, why))

    bad_local = np.array(sorted(reasons), dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[bad_local] = False
    problems = [(int(rows[i]), reasons[i][0], reasons[i][1]) for i in bad_local]
    bad_rows = [(int(rows[i]), _repr_id(id_arr, i), f"{reasons[i][0]}: {reasons[i][1]}") for i in bad_local]

    all_good = len(bad_local) == 0
    good_vec = vec if all_good else vec[mask]  # fast path: no copies when every row is good
    if spec.metric == "cosine" and len(good_vec):
        # norms in float64: squares of large (>1e19) or tiny (<1e-19) float32 values overflow/underflow
        norms = np.linalg.norm(good_vec.astype(np.float64), axis=1, keepdims=True)
        good_vec = (good_vec / norms).astype(np.float32)
    good_vec = np.ascontiguousarray(good_vec, dtype=np.float32)
    keep = None if all_good else pa.array(mask)
    cols = [id_arr if all_good else id_arr.filter(keep),
            pa.FixedSizeListArray.from_arrays(pa.array(good_vec.ravel()), spec.dim)]
    names = [ID_COLUMN, VECTOR_COLUMN]
    for name, arr in user_cols:
        cols.append(arr if all_good else arr.filter(keep))
        names.append(name)
    good = pa.RecordBatch.from_arrays(cols, names=names) if mask.any() else None
    return Checked(good, problems, bad_rows, good_vec)


def _repr_id(arr: pa.Array, i: int) -> str:
    v = arr[int(i)].as_py()
    return "" if v is None else str(v)


def _check_id_type(col: pa.Array, spec: TableSpec, where: str) -> pa.Array:
    t = col.type
    if spec.id_type == "int64":
        if pa.types.is_integer(t):
            if pa.types.is_uint64(t) and len(col) and (pc.max(col).as_py() or 0) > np.iinfo(np.int64).max:
                raise SchemaError(f"{where}: id column has uint64 values beyond int64 range", source=where)
            return col.cast(pa.int64())
        raise SchemaError(f"{where}: id column has type {t}; table {spec.name!r} has integer ids", source=where)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.string())
    raise SchemaError(f"{where}: id column has type {t}; table {spec.name!r} has string ids", source=where)


def _check_vectors(col: pa.Array, spec: TableSpec, where: str) -> tuple[np.ndarray, dict[int, str]]:
    """Return (float32 matrix n x dim with zeros for bad rows, {row: reason})."""
    t = col.type
    n = len(col)
    dim = spec.dim
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise SchemaError(f"{where}: vector column has type {t}; expected a list of numbers of length {dim}",
                          source=where)
    vt = t.value_type
    if not (pa.types.is_floating(vt) or pa.types.is_integer(vt)):
        raise SchemaError(f"{where}: vector column holds {vt} values; expected numbers (float16/32/64 or "
                          f"integers)", source=where)
    bad: dict[int, str] = {}
    null_row = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    for i in np.flatnonzero(null_row):
        bad[int(i)] = "null vector"
    if pa.types.is_fixed_size_list(t):
        if t.list_size != dim:
            for i in range(n):
                bad.setdefault(i, f"vector has dimension {t.list_size}, table expects {dim}")
            return np.zeros((n, dim), dtype=np.float32), bad
        # .values ignores the array offset and keeps null rows' slots, so rows and slots line up
        flat = col.values.slice(col.offset * dim, n * dim)
        elem_null = flat.null_count > 0
        vals = flat.cast(pa.float32()).fill_null(np.nan) if elem_null else flat.cast(pa.float32())
        mat = vals.to_numpy(zero_copy_only=False).reshape(n, dim)
        if elem_null:
            en = np.asarray(flat.is_null().to_numpy(zero_copy_only=False)).reshape(n, dim).any(axis=1)
            for i in np.flatnonzero(en & ~null_row):
                bad.setdefault(int(i), "null element in vector")
    else:
        lengths = pc.list_value_length(col).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        wrong = (lengths != dim) & ~null_row
        for i in np.flatnonzero(wrong):
            bad.setdefault(int(i), f"vector has dimension {int(lengths[i])}, table expects {dim}")
        ok = ~(wrong | null_row)
        mat = np.zeros((n, dim), dtype=np.float32)
        if ok.any():
            sub = col.filter(pa.array(ok))
            flat = pc.list_flatten(sub)
            if flat.null_count:
                en = np.asarray(flat.is_null().to_numpy(zero_copy_only=False)).reshape(-1, dim).any(axis=1)
                for i in np.flatnonzero(ok)[en]:
                    bad.setdefault(int(i), "null element in vector")
                flat = flat.cast(pa.float32()).fill_null(np.nan)
            mat[ok] = flat.cast(pa.float32()).to_numpy(zero_copy_only=False).reshape(-1, dim)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(mat).all(axis=1)
    for i in np.flatnonzero(~finite):
        bad.setdefault(int(i), "vector contains NaN or Inf")
    if spec.metric == "cosine":
        norms = np.einsum("ij,ij->i", mat, mat, dtype=np.float64)
        for i in np.flatnonzero((norms == 0) & finite):
            bad.setdefault(int(i), "zero vector cannot be normalised (cosine metric)")
    if bad:
        mat = mat.copy() if not mat.flags.writeable else mat
        mat[list(bad)] = 0.0
    return mat, bad


def _check_user_columns(batch: pa.RecordBatch, spec: TableSpec, where: str) -> list[tuple[str, pa.Array]]:
    names = [n for n in batch.schema.names if n not in (ID_COLUMN, VECTOR_COLUMN)]
    for n in names:
        if n.startswith("_"):
            raise SchemaError(f"{where}: column {n!r}: names starting with '_' are reserved", source=where)
        if "." in n or not n.strip():
            raise SchemaError(f"{where}: column {n!r}: names must be non-blank and cannot contain '.' (Lance "
                              "reads a dot as a nested field path); rename the column", source=where)
    want = spec.user_schema if spec.user_schema is not None else batch.schema
    # the first rows fix the table's schema (spec.user_schema is then taken from this very batch)
    untyped = [f.name for f in want if f.name in names and pa.types.is_null(f.type)]
    if untyped:
        raise SchemaError(f"{where}: column(s) {untyped} hold only nulls and have no type, so the table's "
                          "schema cannot be fixed from them; give them a type (e.g. pa.array(values, "
                          "type=pa.string())) or drop them", source=where)
    if spec.user_schema is None:
        return [(n, batch.column(n)) for n in names]
    extra = [n for n in names if n not in want.names]
    missing = [n for n in want.names if n not in names]
    if extra or missing:
        parts = []
        if extra:
            parts.append(f"new column(s) {extra}")
        if missing:
            parts.append(f"missing column(s) {missing}")
        raise SchemaError(f"{where}: schema drift against table {spec.name!r}: {', '.join(parts)}; "
                          f"table columns are {want.names}", source=where)
    out = []
    for f in want:
        arr = batch.column(f.name)
        if arr.type != f.type:
            try:
                arr = arr.cast(f.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SchemaError(f"{where}: column {f.name!r} has type {arr.type}; table {spec.name!r} "
                                  f"expects {f.type} ({e})", source=where) from e
        out.append((f.name, arr))
    return out


def group_problems(problems) -> list[tuple[str, str, list[int]]]:
    """Group ``(row, column, reason)`` problems by identical (column, reason), in order of first appearance;
    return ``[(column, reason, rows)]``."""
    groups: dict[tuple[str, str], list[int]] = {}
    for row, column, reason in problems:
        groups.setdefault((str(column), str(reason)), []).append(int(row))
    return [(c, r, rows) for (c, r), rows in groups.items()]


def _rows_text(rows: list[int], shown: int = 3) -> str:
    if len(rows) == 1:
        return f"row {rows[0]}"
    if len(rows) <= shown:
        return "row " + ", ".join(str(r) for r in rows[:-1]) + f" and {rows[-1]}"
    return "row " + ", ".join(str(r) for r in rows[:shown]) + f" and {len(rows) - shown:,} more"


def format_problems(problems, source: str, limit: int = 5, total: int | None = None) -> str:
    """Return a one-paragraph description of bad rows, identical reasons grouped.

    ``problems``: ``[(row, column, reason)]``, possibly only the first ones found; ``total``: how many bad
    rows there are in all (default ``len(problems)``). At most ``limit`` distinct reasons are spelled out::

        10,000 bad row(s) in a.parquet: row 3, 4, 5 and 997 more (vector): vector contains NaN or Inf;
        9,000 more bad row(s) not itemised (the first 1,000 are in .problems)
    """
    problems = list(problems)
    listed = len(problems)
    total = listed if total is None else max(int(total), listed)
    groups = group_problems(problems)
    parts = [f"{_rows_text(rows)} ({column}): {reason}" for column, reason, rows in groups[:limit]]
    if len(groups) > limit:
        rest = sum(len(rows) for _, _, rows in groups[limit:])
        parts.append(f"{rest:,} more row(s) with {len(groups) - limit} other reason(s)")
    if total > listed:
        parts.append(f"{total - listed:,} more bad row(s) not itemised (the first {listed:,} are listed in the "
                     "error's problems)")
    return f"{total:,} bad row(s) in {source}: " + "; ".join(parts)


def problems_json(problems, limit: int = 20) -> str:
    return json.dumps(problems[:limit])
