"""Duplicate groups: connected components of the pairs of a table that lie within a distance threshold.

    g = lakevec.dedup(t, threshold=0.02, columns=["text"])
    g.groups     # group_id, id, group_size, distance_to_representative, is_representative, <columns>
    g.summary    # groups, rows_in_groups, largest_group, duplicate_rows, pairs, ...
    g.pairs      # the unordered pairs within the threshold (each row's k nearest), left_id < right_id

How: a self-join in *range* mode (every pair within ``threshold``, up to ``max_pairs_per_row`` per row; rows
that hit that cap are reported), de-duplicated to unordered pairs, then ``scipy.sparse.csgraph
.connected_components`` on the pair graph. Because the join collects every pair within the threshold rather
than each row's k nearest, a group larger than k+1 (e.g. 23 identical texts with k=10) is still found whole;
``k`` only limits the pairs reported in ``.pairs``. The representative of a group is its member with the
most duplicates (ties: the smallest id); ``distance_to_representative`` is computed exactly from the vectors
(0 for identical vectors). Groups are numbered from 0 by decreasing size. The pairs and the group rows are
held on the driver (about 40 bytes per pair).

``output=`` writes the groups as a Parquet folder exactly once (the protocol of ``lakevec.join.output``).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgumentError


class DedupResult:
    """``groups`` (pyarrow Table), ``pairs``, ``summary`` (dict), ``report`` (the join's JoinReport), ``output``,
    ``skipped``. Attribute access falls through to ``groups``."""

    def __init__(self, groups, pairs, summary: dict, report, output=None, storage_options=None, skipped=False):
        self._groups = groups
        self.pairs = pairs
        self.summary = summary
        self.report = report
        self.output = output
        self.storage_options = storage_options
        self.skipped = skipped

    @property
    def groups(self) -> pa.Table:
        if self._groups is None and self.output is not None:
            from .output import read_output
            self._groups = read_output(self.output, self.storage_options)
        return self._groups

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.groups, name)

    def __len__(self) -> int:
        return self.groups.num_rows

    def __repr__(self) -> str:
        s = self.summary
        return (f"DedupResult({s.get('groups', 0):,} groups, {s.get('rows_in_groups', 0):,} rows in groups, "
                f"largest {s.get('largest_group', 0)})")


def dedup(table, threshold, k: int = 10, output=None, *, columns=None, engine="local", nprobe=None,
          max_pairs_per_row: int = 1000, idempotency_key: str | None = None, recall_sample: int = 200,
          storage_options: dict | None = None, progress=None, **join_kw) -> DedupResult:
    """Find the duplicate groups of ``table`` (see the module docstring)."""
    t0 = time.time()
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(threshold)) or threshold < 0:
        raise InvalidArgumentError(f"threshold must be a non-negative distance, got {threshold!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    from .executor import knn_join, open_table_uri
    from .sources import is_table
    table = open_table_uri(table, storage_options)
    if not is_table(table):
        raise InvalidArgumentError("dedup needs a lakevec table")
    cols = [columns] if isinstance(columns, str) else list(columns or [])
    out = None
    if output is not None:
        from .output import default_key, make_output
        from .scratch import new_job_id
        rv = table.version
        key = idempotency_key or default_key({"dedup": table.data_uri, "version": rv, "threshold": float(threshold),
                                              "k": k, "nprobe": nprobe, "cap": max_pairs_per_row, "columns": cols})
        out = make_output(output, storage_options if storage_options is not None else table.lake.storage_options,
                            key, new_job_id())
        done = out.existing()
        if done is not None:
            from .report import JoinReport
            rep = done.get("report", {})
            return DedupResult(None, None, rep.get("dedup_summary", {}),
                               JoinReport(**{k_: v for k_, v in rep.items() if k_ != "dedup_summary"}),
                               output=out.uri, storage_options=out.storage_options, skipped=True)
    res = knn_join(table, table, k=None, radius=float(threshold), nprobe=nprobe, engine=engine, dedup=True,
                   max_pairs_per_row=max(int(max_pairs_per_row), int(k)), recall_sample=recall_sample,
                   storage_options=storage_options, progress=progress, _internal=True, **join_kw)
    pairs = res.table
    groups, summary = build_groups(pairs, table, res.report.self_join and table, cols, float(threshold))
    summary.update({"threshold": float(threshold), "pairs": int(pairs.num_rows), "rows": int(res.report.rows_left),
                    "rows_capped": int(res.report.rows_capped), "max_pairs_per_row": int(max(max_pairs_per_row, k)),
                    "recall_estimate": (res.report.recall or {}).get("estimate"),
                    "seconds": round(time.time() - t0, 3)})
    shown = pairs.filter(pc.less(pairs.column("rank"), k)).drop_columns(["_ref", "_raddr"])
    if out is None:
        return DedupResult(groups, shown, summary, res.report)
    from .output import PartInfo
    import pyarrow.parquet as pq
    part_uri = f"{out.staging}/part-{out.run_id}-groups.parquet"
    path = out.store.loc.fs_path(part_uri)
    import os
    if out.store.loc.is_local:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with out.store.fs.open_output_stream(path) as f:
            pq.write_table(groups, f)
        report = {**res.report.to_dict(), "dedup_summary": summary}
        report["output"] = {"uri": out.uri, "key": out.key, "parts": 1, "skipped": False}
        committed, _ = out.commit([PartInfo(part_uri, groups.num_rows)], groups.num_rows, report)
    except BaseException:
        out.discard()
        raise
    res.report.output = {"uri": out.uri, "key": out.key, "parts": 1, "skipped": not committed,
                         "committed": committed}
    return DedupResult(groups, shown, summary, res.report, output=out.uri, storage_options=out.storage_options,
                       skipped=not committed)


def build_groups(pairs: pa.Table, table, _self, columns: list, threshold: float) -> tuple[pa.Table, dict]:
    """Connected components of ``pairs`` (with row addresses ``_ref``/``_raddr``) -> (groups table, summary)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..search.reader import take_columns, vectors_of
    snap = table.snapshot()
    id_type = pa.int64() if table.meta.id_type == "int64" else pa.string()
    empty = pa.table({"group_id": pa.array([], pa.int64()), "id": pa.array([], id_type),
                      "group_size": pa.array([], pa.int64()), "distance_to_representative": pa.array([], pa.float32()),
                      "is_representative": pa.array([], pa.bool_())})
    if not pairs.num_rows:
        for c in columns:
            empty = empty.append_column(c, pa.array([], snap.ds.schema.field(c).type))
        return empty, {"groups": 0, "rows_in_groups": 0, "largest_group": 0, "duplicate_rows": 0,
                       "group_sizes": {}}
    a = pairs.column("_ref").to_numpy().astype(np.uint64)
    b = pairs.column("_raddr").to_numpy().astype(np.uint64)
    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    n = len(nodes)
    ia, ib = inv[:len(a)], inv[len(a):]
    g = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(n, n))
    ncomp, label = connected_components(g, directed=False)
    degree = np.bincount(np.concatenate([ia, ib]), minlength=n)
    cols = ["id", "vector", *[c for c in columns if c not in ("id", "vector")]]
    rows = take_columns(snap.ds, nodes, cols)
    ids = rows.column("id")
    vec = np.ascontiguousarray(vectors_of(rows.column("vector")), dtype=np.float32)
    size = np.bincount(label, minlength=ncomp)
    # representative: most duplicates, then smallest id
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.asarray(pc.sort_indices(ids))] = np.arange(n)
    order = np.lexsort((id_rank, -degree, label))
    first = np.r_[0, np.flatnonzero(np.diff(label[order])) + 1]
    rep_of = np.empty(ncomp, dtype=np.int64)
    rep_of[label[order[first]]] = order[first]
    rep = rep_of[label]
    diff = vec - vec[rep]
    dist = np.einsum("ij,ij->i", diff, diff, dtype=np.float32)
    metric = table.meta.metric
    if metric == "cosine":
        dist = dist * np.float32(0.5)
    elif metric == "dot":
        dist = -np.einsum("ij,ij->i", vec, vec[rep], dtype=np.float32)
    # group ids: by decreasing size, then by the representative's id
    g_order = np.lexsort((id_rank[rep_of], -size))
    gid = np.empty(ncomp, dtype=np.int64)
    gid[g_order] = np.arange(ncomp)
    out = pa.table({"group_id": pa.array(gid[label]), "id": ids, "group_size": pa.array(size[label].astype(np.int64)),
                    "distance_to_representative": pa.array(dist.astype(np.float32)),
                    "is_representative": pa.array(np.arange(n) == rep)})
    for c in cols[2:]:
        out = out.append_column(c, rows.column(c))
    if "vector" in columns:
        out = out.append_column("vector", rows.column("vector"))
    out = out.sort_by([("group_id", "ascending"), ("is_representative", "descending"),
                       ("distance_to_representative", "ascending")])
    hist = np.bincount(size)
    summary = {"groups": int(ncomp), "rows_in_groups": int(n), "largest_group": int(size.max()),
               "duplicate_rows": int(n - ncomp),
               "group_sizes": {str(s): int(c) for s, c in enumerate(hist) if c and s > 0}}
    return out, summary
