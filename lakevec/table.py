"""Table: a thin facade over one table's Lance dataset, metadata, index, search and jobs."""
from __future__ import annotations

import threading

import lance
import pyarrow as pa

from .config import DATA_DIR, PARTITION_COLUMN
from .errors import InvalidArgumentError, StorageError
from .metadata import TableFiles, TableMeta
from .snapshot import Snapshot, build_snapshot
from .state import StateReader, TableState
from .store.lance_io import drain_io_stats, open_dataset, read_transaction


class Table:
    """One vector table of a lake. ``checkout(v)`` returns a read-only view of version v."""

    def __init__(self, lake, name: str, meta: TableMeta, version: int | None = None):
        self.lake = lake
        self.name = name
        self.meta = meta
        self.loc = lake.loc.child(name)
        self.data_uri = self.loc.join(DATA_DIR)
        self.store = lake.store
        self.files = TableFiles(lake.store, self.loc)
        self.states = StateReader(lake.store, self.loc)
        self._pinned = version
        self._snap: Snapshot | None = None
        self._latest = None  # the latest version this object saw (see _open_latest)
        self._v2_names: bool | None = None
        self._lock = threading.Lock()
        self._last_search_stats = None

    # -- versions ----------------------------------------------------------------------------
    def _open_version(self, version: int | None) -> lance.LanceDataset:
        ds = open_dataset(self.data_uri, self.lake.lance_options, version, what=f"table {self.name!r}")
        drain_io_stats(ds, self.store.counters)  # the manifest reads count too
        return ds

    def _open_latest(self) -> lance.LanceDataset:
        """Return the latest version. With Lance's V2 manifest names (``u64::MAX - version``), "is the version
        this process saw last still the latest?" is one HEAD of the next version's manifest, instead of
        listing the versions folder (a page of up to 1,000 names) and reading the manifest again."""
        ds = self._latest
        if ds is not None and self._v2_names:
            try:
                moved = self.store.head(self._manifest_uri(ds.version + 1))
            except StorageError as e:
                raise StorageError(f"opening table {self.name!r} at {self.data_uri}: {e}") from e
            if not moved:
                return ds
        ds = self._open_version(None)
        if self._v2_names is None:
            self._v2_names = self.store.head(self._manifest_uri(ds.version))
        self._latest = ds
        return ds

    def _manifest_uri(self, version: int) -> str:
        return f"{self.data_uri}/_versions/{(1 << 64) - 1 - int(version):020d}.manifest"

    def _dataset(self) -> lance.LanceDataset:
        return self._open_version(self._pinned)

    def _invalidate(self) -> None:
        with self._lock:
            self._snap = None

    def _snapshot_of(self, ds: lance.LanceDataset) -> Snapshot:
        return build_snapshot(ds, self.state_of(ds), self.files)

    def state_of(self, ds: lance.LanceDataset) -> TableState:
        """Return the lakevec state (index in force, partition map, id runs, keys) of dataset version ``ds``."""
        from .state import wrap_state_error
        try:
            return self.states.state_at(ds)
        except Exception as e:
            raise wrap_state_error(e, f"reading the state of version {ds.version} of table {self.name!r}") from e

    def snapshot(self) -> Snapshot:
        """Return the Snapshot read by searches (latest version, or the pinned one)."""
        if self._pinned is not None:
            with self._lock:
                if self._snap is None:
                    self._snap = self._snapshot_of(self._dataset())
                return self._snap
        ds = self._open_latest()
        with self._lock:
            if self._snap is None or self._snap.version != ds.version:
                self._snap = self._snapshot_of(ds)
            return self._snap

    @property
    def version(self) -> int:
        """The version this object reads: the pinned one, or the latest."""
        return self._pinned if self._pinned is not None else self._open_latest().version

    def versions(self, limit: int | None = None) -> list[dict]:
        """Return the table's kept versions, oldest first: version, timestamp (ISO), operation, rows.

        ``operation`` is lakevec's name for its own commits ("append", "index", "compact", "schema",
        "delete"...) or Lance's operation name for other writers; ``limit`` keeps the newest ones."""
        from .state import OP_PROPERTY
        ds = self._open_latest()
        vs = ds.versions()
        if limit is not None:
            vs = vs[-int(limit):]
        out = []
        for v in vs:
            n = v["version"]
            try:
                tx = read_transaction(ds, n)
            except Exception:
                tx = None
            op = None
            if tx is not None:
                op = (tx.transaction_properties or {}).get(OP_PROPERTY) or type(tx.operation).__name__
            try:
                dv = ds if n == ds.version else self._open_version(n)
                rows = sum(f.count_rows() for f in dv.get_fragments())
            except Exception:
                rows = None
            ts = v["timestamp"]
            out.append({"version": n, "timestamp": ts.isoformat() if hasattr(ts, "isoformat") else str(ts),
                        "operation": op or ("create" if n == 1 else "-"), "rows": rows})
        return out

    def checkout(self, version: int) -> "Table":
        """Return a read-only view of ``version`` of this table (time travel)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgumentError(f"version must be a positive integer, got {version!r}")
        self._open_version(version)  # raises a clear error if it does not exist
        return Table(self.lake, self.name, self.meta, version)

    def _check_writable(self) -> None:
        if self._pinned is not None:
            raise InvalidArgumentError(f"table {self.name!r} is checked out at version {self._pinned} (read-only); "
                                       "open the table again to write")

    # -- reads -------------------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the table (without lakevec's internal _partition column)."""
        s = self._dataset().schema
        return pa.schema([f for f in s if f.name != PARTITION_COLUMN])

    def count_rows(self, filter: str | None = None) -> int:
        """Return the number of rows (matching ``filter``, a SQL predicate, if given)."""
        ds = self._dataset()
        if filter is not None:
            from .search.filters import check_filter
            filter = check_filter(filter, ds.schema)
        try:
            return ds.count_rows() if filter is None else ds.count_rows(filter=filter)
        except Exception as e:
            raise self._read_error(e, f"counting the rows of table {self.name!r}", filter) from e

    def to_arrow(self, columns=None, filter: str | None = None) -> pa.Table:
        """Return the table's rows as a pyarrow Table (small tables and notebooks)."""
        cols = list(columns) if columns else [n for n in self.schema.names]
        ds = self._dataset()
        if filter is not None:
            from .search.filters import check_filter
            filter = check_filter(filter, ds.schema)
        try:
            return ds.to_table(columns=cols, filter=filter)
        except Exception as e:
            raise self._read_error(e, f"reading columns {cols} of table {self.name!r}", filter) from e

    @staticmethod
    def _read_error(e: Exception, what: str, filter) -> Exception:
        """A bad filter or column is the caller's error; anything else (a missing file, the store) is not."""
        text = str(e)
        if "invalid user input" in text.lower():
            detail = text.split(", /")[0].replace("Invalid user input: ", "")[:300]  # no Rust source paths
            return InvalidArgumentError(f"{what}: invalid filter {filter!r} or columns ({detail})")
        from .store.objects import wrap_io_error
        return wrap_io_error(e, what)

    def search(self, queries, k: int = 10, nprobe: int | None = None, filter: str | None = None, columns=None):
        """Return the ``k`` nearest rows of each query as a pyarrow Table.

        ``queries``: one (d,) vector or an (m, d) batch. Columns: query_index, id, distance, rank, then
        ``columns``; sorted by query_index, rank. ``filter`` is a SQL predicate on metadata columns
        applied before scoring, so k rows come back whenever k rows match. ``nprobe`` defaults to the
        index's calibrated value; an unindexed table is searched exactly.
        """
        from .search.api import search
        return search(self, queries, k=k, nprobe=nprobe, filter=filter, columns=columns)

    @property
    def last_search_stats(self) -> dict | None:
        """Counts of the last search: partitions read, bytes, requests, seconds."""
        return self._last_search_stats

    def stats(self, partitions: bool = True) -> dict:
        """Return rows, bytes and, per IVF partition, rows, bytes, temperature and tier (hot = cached on
        NVMe); bytes per tier; cache hits/misses of this table; I/O counters and estimated cost."""
        from .cache.report import table_stats
        return table_stats(self, partitions=partitions)

    def index_info(self) -> dict | None:
        """Return the metadata of the index in force for this version, or None."""
        snap = self.snapshot()
        if snap.index is None:
            return None
        d = snap.index.to_json()
        d["data_version"] = snap.state.index_version if snap.state is not None else d.get("data_version")
        d["unassigned_rows"] = sum(f.num_rows for f in snap.unassigned)
        d["fragments"] = len(snap.fragments)
        return d

    # -- writes ------------------------------------------------------------------------------
    def add(self, data, id_column: str = "id", vector_column: str = "vector", on_bad_rows: str = "raise",
            idempotency_key: str | None = None, engine: str = "local", progress=None):
        """Validate ``data`` and append it in one commit; return an AddResult.

        ``data``: pyarrow Table/RecordBatchReader, pandas DataFrame, dict of columns, or Parquet
        path(s)/glob (local or s3://). ``on_bad_rows``: "raise" (default: nothing is written),
        "skip" (drop bad rows, count them) or "quarantine" (drop and record them in the rejects table).
        Re-running with the same ``idempotency_key`` (or the same Parquet sources) commits nothing.
        ``progress``: True for progress bars (also in notebooks), or a callable (see lakevec.progress).
        """
        self._check_writable()
        kw = dict(id_column=id_column, vector_column=vector_column, on_bad_rows=on_bad_rows,
                  idempotency_key=idempotency_key)
        mod = type(data).__module__ or ""
        if mod.startswith(("pyspark.sql", "ray.data")):  # written by their own engine's tasks, not collected here
            api = "lakevec.spark.write(df, table)" if mod.startswith("pyspark") else "lakevec.ray.write(ds, table)"
            raise InvalidArgumentError(f"table {self.name!r}: a {type(data).__name__} is written by its engine's "
                                       f"tasks: use {api}")
        from .engines import engine_name
        from .ingest.convert import is_path_input
        if engine_name(engine) != "local" and is_path_input(data):  # Parquet sources: read in engine tasks
            from .ingest.distributed import ingest
            return ingest(self, data, engine, progress=progress, **kw)
        # the local engine, or in-memory data (already on the driver: validated there whatever the engine)
        from .ingest.job import add
        return add(self, data, progress=progress, **kw)

    def build_index(self, num_partitions: int | None = None, engine: str = "local", **kw):
        """Train IVF centroids and rewrite the table clustered by partition, in one commit.

        Keywords: ``seed`` (reproducible builds), ``sample_rows``, ``target_recall`` (of the calibrated
        default nprobe), ``progress`` (True for bars, or a callable: see lakevec.progress)."""
        self._check_writable()
        from .index.build import build_index
        return build_index(self, num_partitions=num_partitions, engine=engine, **kw)

    def compact(self, target_rows: int | None = None, engine: str = "local") -> dict:
        """Merge small fragments within each partition in one commit (see lakevec.maintenance)."""
        self._check_writable()
        from .maintenance import compact
        return compact(self, target_rows=target_rows, engine=engine)

    def optimize(self, retrain: bool = False, dry_run: bool = False, engine: str = "local", **kw) -> dict:
        """Keep the index healthy as the table grows: measure partition imbalance, drift (recall@10 of recent
        rows at the default nprobe) and unassigned rows; past a threshold, split oversized partitions and
        merge tiny ones locally, re-calibrate nprobe and commit once (``retrain``: rebuild the index). A
        healthy table is left as it is. Returns a report (see lakevec.maintenance.optimize)."""
        if not dry_run:
            self._check_writable()
        from .maintenance import optimize
        return optimize(self, retrain=retrain, dry_run=dry_run, engine=engine, **kw)

    def vacuum(self, older_than=None, dry_run: bool = False, force: bool = False) -> dict:
        """Remove versions older than ``older_than`` (timedelta or seconds; default and minimum 7 days, less
        only with ``force=True``) and the files and objects no kept version and no running job can use
        (see lakevec.maintenance.vacuum). The current version is never removed."""
        self._check_writable()
        from .maintenance import vacuum
        return vacuum(self, older_than=older_than, dry_run=dry_run, force=force)

    def rejects(self) -> pa.Table:
        """Return the quarantined rows of this version (ingest_key, source, row, id, reason, rejected_at).

        They are committed with their ingestion (one file per commit, listed in the version's state)."""
        from .ingest.rejects import read_rejects
        return read_rejects(self, self.snapshot().state)

    def __repr__(self) -> str:
        v = f", version={self._pinned}" if self._pinned is not None else ""
        return f"Table({self.name!r}, dim={self.meta.dim}, metric={self.meta.metric!r}{v})"
