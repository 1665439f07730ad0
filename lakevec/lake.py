"""Lake: the tables under one root (local path or s3://bucket/prefix)."""
from __future__ import annotations

import re
import time

import lance
import pyarrow as pa

from .config import MEMORY_CACHE_BYTES, DATA_DIR, FORMAT_VERSION, LAKE_MARKER, METRICS, META_DIR, TABLE_NAME_PATTERN, CacheConfig
from .errors import (InvalidArgumentError, InvalidNameError, LakevecError, NotALakeError, StorageError,
                     TableExistsError, TableNotFoundError)
from .ingest.validate import TableSpec
from .metadata import TableFiles, TableMeta
from .store.lance_io import open_dataset
from .store.location import parse_location
from .store.objects import ObjectStore, wrap_io_error

_NAME_RE = re.compile(TABLE_NAME_PATTERN)


def check_table_name(name) -> str:
    """Return ``name`` if it is a valid table name, else raise InvalidNameError saying why."""
    if not isinstance(name, str):
        raise InvalidNameError(f"table name must be a string, got {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):
        why = "is empty" if not name else ("contains a path separator" if ("/" in name or "\\" in name) else
                                           "is '.' or '..'" if name in (".", "..") else
                                           "is longer than 128 characters" if len(name) > 128 else
                                           "has characters outside [A-Za-z0-9_-]")
        raise InvalidNameError(f"invalid table name {name!r}: it {why}")
    return name


class Lake:
    """A lakevec lake: a marker object plus one folder per table."""

    def __init__(self, uri, storage_options: dict | None = None, cache_dir: str | None = None,
                 cache_bytes: int | None = None, create: bool = True, memory_cache_bytes: int | None = None):
        self.loc = parse_location(uri, storage_options)
        from .store.secrets import SecretDict
        self.storage_options = SecretDict(storage_options) if storage_options is not None else None
        self.store = ObjectStore(self.loc)
        self.lance_options = self.loc.lance_options()
        self.cache_config = CacheConfig(cache_dir, cache_bytes if cache_bytes is not None else CacheConfig.cache_bytes)
        self._cache = None
        from .search.memcache import BlockCache
        if memory_cache_bytes is None:
            memory_cache_bytes = 0 if cache_dir else MEMORY_CACHE_BYTES
        self.memory_cache = BlockCache(memory_cache_bytes)
        self._open_marker(create)

    @property
    def uri(self) -> str:
        return self.loc.uri

    def _open_marker(self, create: bool) -> None:
        self.store.check_reachable()
        marker = self.loc.join(LAKE_MARKER)
        if self.loc.scheme == "s3":
            self._check_bucket()
        if self.store.exists(marker):
            body = self.store.read_json(marker)
            fv = body.get("format_version")
            if not isinstance(fv, int) or fv > FORMAT_VERSION:
                raise NotALakeError(f"{marker}: lake format version {fv!r} is not supported by this lakevec "
                                    f"(supports {FORMAT_VERSION}); upgrade lakevec")
            if fv < FORMAT_VERSION:
                raise NotALakeError(f"{marker}: lake format version {fv} was written by an earlier lakevec (0.1, "
                                    f"partition-map sidecars); this lakevec reads format {FORMAT_VERSION}: export "
                                    "the tables to Parquet with the old version and ingest them into a new lake")
            return
        if not create:
            raise NotALakeError(f"no lakevec lake at {self.uri} (missing {LAKE_MARKER})")
        if self.loc.is_local:
            import os
            if os.path.isdir(self.uri) and any(n for n in os.listdir(self.uri) if not n.startswith(".")):
                raise NotALakeError(f"{self.uri} is a non-empty folder without {LAKE_MARKER}; "
                                    "refusing to turn it into a lake (use an empty or new folder)")
        elif any(not i.base_name.startswith(".") for i in self.store.list(self.uri)):
            # same rule as local folders: never adopt a prefix that already holds other data
            raise NotALakeError(f"{self.uri} is a non-empty prefix without {LAKE_MARKER}; "
                                "refusing to turn it into a lake (use an empty or new prefix)")
        self.store.write_json(marker, {"format_version": FORMAT_VERSION, "created_at": time.time(),
                                       "created_by": "lakevec"})

    def _check_bucket(self) -> None:
        import pyarrow.fs as pafs
        try:
            info = self.store.fs.get_file_info(self.loc.bucket)
        except Exception as e:
            raise wrap_io_error(e, f"connecting to {self.uri}") from e
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"bucket {self.loc.bucket!r} of lake {self.uri} does not exist")

    # -- cache -------------------------------------------------------------------------------
    @property
    def cache(self):
        """The NVMe cache of this lake (lakevec.cache.NvmeCache), or a disabled one."""
        if self._cache is None:
            from .cache import open_cache
            self._cache = open_cache(self)
        return self._cache

    # -- tables ------------------------------------------------------------------------------
    def table_names(self) -> list[str]:
        """Return the names of the tables in the lake, sorted."""
        names = []
        for info in self.store.list(self.uri):
            # names may start with '_' or '-' like any other ([A-Za-z0-9_-]): only table.json makes a table
            if info.base_name.startswith(".") or info.base_name == LAKE_MARKER:
                continue
            if _NAME_RE.fullmatch(info.base_name) and self.store.exists(self.loc.join(info.base_name, META_DIR, "table.json")):
                names.append(info.base_name)
        return sorted(names)

    def create_table(self, name: str, dim: int, metric: str = "l2", id_type: str = "int64",
                     exist_ok: bool = False, schema: pa.Schema | None = None):
        """Create an empty table of ``dim``-dimensional vectors; return it.

        ``schema``: the user columns (besides ``id`` and ``vector``), e.g. ``pa.schema([("lang", pa.string())])``.
        Without it, the first ingestion that brings user columns sets them (a schema commit on the empty
        table: it cannot race with rows, see ``lakevec.ingest.schema``)."""
        from .table import Table
        check_table_name(name)
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 65536:
            raise InvalidArgumentError(f"dim must be an integer in [1, 65536], got {dim!r}")
        if metric not in METRICS:
            raise InvalidArgumentError(f"unknown metric {metric!r}: expected one of {METRICS}")
        if id_type not in ("int64", "string"):
            raise InvalidArgumentError(f"id_type must be 'int64' or 'string', got {id_type!r}")
        tloc = self.loc.child(name)
        files = TableFiles(self.store, tloc)
        if self.store.exists(tloc.join(META_DIR, "table.json")):
            if exist_ok:
                t = self.open_table(name)
                if t.meta.dim != dim or t.meta.metric != metric:
                    raise TableExistsError(f"table {name!r} exists with dim={t.meta.dim}, metric={t.meta.metric}")
                return t
            raise TableExistsError(f"table {name!r} already exists in {self.uri}")
        meta = TableMeta(name, dim, metric, id_type, time.time(), FORMAT_VERSION, metric == "cosine")
        user = _user_schema(schema, name)
        schema = TableSpec(name, dim, metric, id_type, None).output_schema(user)
        data_uri = tloc.join(DATA_DIR)
        try:
            lance.write_dataset(schema.empty_table(), data_uri, schema=schema, mode="create",
                                storage_options=self.lance_options)
        except Exception as e:
            if "already exists" not in str(e).lower():
                raise wrap_io_error(e, f"creating table {name!r} at {data_uri}") from e
            # The empty first version of a create_table that died before its table.json, or of a concurrent
            # create_table of the same name: reuse it (same schema) or supersede it (other schema); never
            # delete it, the other creator may be about to write its table.json.
            existing = self._empty_first_version(data_uri)
            if existing is None:
                raise TableExistsError(f"table {name!r} has data at {data_uri} but no table metadata "
                                       f"({META_DIR}/table.json); drop_table({name!r}) removes it") from e
            if not existing.schema.equals(schema):
                self._supersede_empty(data_uri, schema, name)
        files.write_table_meta(meta)  # last: a table exists once its table.json does
        return Table(self, name, meta)

    def _supersede_empty(self, data_uri: str, schema: pa.Schema, name: str) -> None:
        """Give the empty first version left by a create_table that died before its table.json another schema.

        A Lance ``Merge`` with no fragments on exactly version 1: Lance refuses it if anything committed since
        (a concurrent creator of the same name already adding rows), so no row can be lost, unlike an Overwrite."""
        from lance.schema import LanceSchema
        try:
            lance.LanceDataset.commit(data_uri, lance.Transaction(1, lance.LanceOperation.Merge(
                [], LanceSchema.from_pyarrow(schema))), storage_options=self.lance_options, max_retries=0)
        except Exception as e:
            if "conflict" in str(e).lower() or "preempted" in str(e).lower():
                raise TableExistsError(f"table {name!r} is being created concurrently with other columns; open it, "
                                       "or drop it and create it again") from e
            raise wrap_io_error(e, f"creating table {name!r} at {data_uri}") from e

    def _empty_first_version(self, data_uri: str):
        """Return the dataset at ``data_uri`` if it holds only the empty first version a create_table
        writes, else None."""
        try:
            ds = open_dataset(data_uri, self.lance_options)
        except LakevecError:
            return None
        return ds if ds.version == 1 and ds.count_rows() == 0 else None

    def open_table(self, name: str):
        """Return the table called ``name``."""
        from .table import Table
        check_table_name(name)
        files = TableFiles(self.store, self.loc.child(name))
        try:
            meta = files.read_table_meta()
        except StorageError as e:
            if "not found" in str(e):
                raise TableNotFoundError(f"table {name!r} not found in lake {self.uri}") from None
            raise
        return Table(self, name, meta)

    def drop_table(self, name: str, missing_ok: bool = False) -> None:
        """Delete a table and all its versions and files."""
        check_table_name(name)
        tloc = self.loc.child(name)
        if not self.store.exists(tloc.join(META_DIR, "table.json")):
            import pyarrow.fs as pafs
            if any(i.type == pafs.FileType.File for i in self.store.list(tloc.uri, recursive=True)):
                self.store.delete_tree(tloc.uri)  # the remains of a failed create_table
                return
            if missing_ok:
                return
            raise TableNotFoundError(f"table {name!r} not found in lake {self.uri}")
        # table.json first, so a half-dropped table is invisible rather than broken
        self.store.delete(tloc.join(META_DIR, "table.json"))
        self.store.delete_tree(tloc.uri)
        if self._cache is not None:
            try:
                self._cache.evict(name)
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"


def open_table_uri(table, storage_options: dict | None = None):
    """Return ``table`` if it is a Table, else open the table URI ``"<lake uri>/<table name>"``."""
    if hasattr(table, "data_uri") and hasattr(table, "lake"):
        return table
    if not isinstance(table, str) or "/" not in table.rstrip("/"):
        raise InvalidArgumentError(f"table must be a lakevec Table or a table URI '<lake uri>/<table name>', "
                                   f"got {table!r}")
    lake_uri, name = table.rstrip("/").rsplit("/", 1)
    if lake_uri.endswith(":/") or lake_uri.endswith(":"):  # "s3://bucket" has no table part
        raise InvalidArgumentError(f"table URI {table!r} names no table: expected '<lake uri>/<table name>'")
    return Lake(lake_uri, storage_options, create=False).open_table(name)


def _user_schema(schema, name: str) -> pa.Schema:
    """Validate the user columns given to create_table."""
    from .config import ID_COLUMN, PARTITION_COLUMN, VECTOR_COLUMN
    if schema is None:
        return pa.schema([])
    if isinstance(schema, (list, tuple)):
        try:
            schema = pa.schema(schema)
        except (TypeError, ValueError, pa.ArrowException) as e:
            raise InvalidArgumentError(f"schema of table {name!r}: {e}") from e
    if not isinstance(schema, pa.Schema):
        raise InvalidArgumentError(f"schema must be a pyarrow.Schema of the user columns, got {type(schema).__name__}")
    fields = []
    for f in schema:
        if f.name in (ID_COLUMN, VECTOR_COLUMN):
            continue  # given for completeness: lakevec types them itself
        if f.name.startswith("_") or f.name == PARTITION_COLUMN or "." in f.name or not f.name.strip():
            raise InvalidArgumentError(f"schema of table {name!r}: column name {f.name!r} is not allowed (names "
                                       "starting with '_' are reserved; no '.', not blank)")
        fields.append(f)
    return pa.schema(fields)


def connect(uri, storage_options: dict | None = None, cache_dir: str | None = None,
            cache_bytes: int | None = None, memory_cache_bytes: int | None = None) -> Lake:
    """Open the lake at ``uri`` (a local path or s3://bucket/prefix), creating its marker if new.

    ``cache_dir``/``cache_bytes``: the NVMe tier. ``memory_cache_bytes``: the in-process LRU of decoded
    partitions (default ``config.MEMORY_CACHE_BYTES``, env ``LAKEVEC_MEMORY_CACHE_BYTES``; 0 disables).
    """
    return Lake(uri, storage_options, cache_dir, cache_bytes, memory_cache_bytes=memory_cache_bytes)
