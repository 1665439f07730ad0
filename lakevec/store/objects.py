"""Object-store access for lakevec's own small objects (JSON, index files) and data-file bytes.

Wraps a pyarrow FileSystem (local or S3), counts every request, and turns pyarrow/OS errors into
lakevec errors that name the object. Lance datasets are opened with ``Location.lance_options()``.
"""
from __future__ import annotations

import json
import os
import re
import uuid

import pyarrow.fs as pafs

from ..errors import CredentialsError, LakevecError, StorageError
from .accounting import IOCounters
from .location import Location


def _make_fs(loc: Location) -> pafs.FileSystem:
    if loc.is_local:
        return pafs.LocalFileSystem()
    o = loc.options
    endpoint = o.get("aws_endpoint", "")
    scheme = None
    if endpoint:
        scheme = "http" if endpoint.startswith("http://") else "https"
        endpoint = endpoint.split("://", 1)[-1].rstrip("/")
    kw = dict(region=o.get("aws_region", "us-east-1"), **loc.deadline.pyarrow_s3_kwargs())
    if o.get("aws_access_key_id"):
        kw.update(access_key=o["aws_access_key_id"], secret_key=o.get("aws_secret_access_key"))
        if o.get("aws_session_token"):
            kw["session_token"] = o["aws_session_token"]
    if endpoint:
        kw.update(endpoint_override=endpoint, scheme=scheme)
    try:
        return pafs.S3FileSystem(**kw)
    except Exception as e:  # pyarrow raises ArrowInvalid etc. on bad options
        raise StorageError(f"cannot create an S3 client for {loc.uri}: {clean_error_text(e)}") from e


_SERVER_ERROR = re.compile(r"(status( code)?[: ]*|\(|http )5\d\d\b|bad gateway|service unavailable|slowdown|"
                           r"internalerror|internal server error")
_RETRY_SETTINGS = re.compile(r"(max_retries|retry_timeout)\s*:\s*\S+")
_RUST_LOCATION = re.compile(r",?\s*(?:at\s+)?/\S+?\.rs:\d+(?::\d+)?")


def clean_error_text(e) -> str:
    """Return the first line of an exception's text without Rust source locations (``/.../x.rs:12:5``),
    at most 300 characters: what a lakevec message quotes from a Lance/pyarrow/SDK error."""
    text = _RUST_LOCATION.sub("", str(e)).strip()
    line = text.splitlines()[0] if text else (type(e).__name__ if isinstance(e, BaseException) else "")
    return line[:300]


def wrap_io_error(e: BaseException, what: str) -> LakevecError:
    """Return a lakevec error for an exception raised by pyarrow/Lance/OS while doing ``what``."""
    if isinstance(e, LakevecError):
        return e
    text = str(e)
    low = text.lower()
    first = clean_error_text(e)
    # error codes are spelt AccessDenied, ACCESS_DENIED or "access denied" depending on the client
    flat = low.replace("_", "").replace(" ", "")
    if any(s in flat for s in ("accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden",
                                "credentials", "invalidaccesskey", "invalidtoken", "expiredtoken",
                                "httpstatus403", "statuscode:403", "(403)", "code403")):
        return CredentialsError(f"{what}: the store rejected the credentials ({first})")
    low = _RETRY_SETTINGS.sub("", low)  # "retry_timeout: 6s" is a setting, not what happened
    if any(s in low for s in ("connection refused", "couldn't connect", "could not connect", "dns error",
                               "failed to connect", "connect error", "unreachable", "failed to lookup")):
        return StorageError(f"{what}: the store is unreachable ({first})")
    if any(s in low for s in ("timed out", "timeout", "operation too slow", "deadline")):
        return StorageError(f"{what}: the store did not answer in time ({first})")
    if any(s in low for s in ("error sending request", "connection reset", "broken pipe", "network_connection",
                               "connection closed", "dns")):
        return StorageError(f"{what}: the store is unreachable ({first})")
    if _SERVER_ERROR.search(low):
        return StorageError(f"{what}: the store failed to serve the request, a server error ({first})")
    if any(s in low for s in ("nosuchbucket", "bucket does not exist", "the specified bucket")):
        return StorageError(f"{what}: the bucket does not exist ({first})")
    return StorageError(f"{what}: {first}")


def _first_line(text: str) -> str:
    return clean_error_text(text)


class ObjectStore:
    """Counted, error-wrapped reads and writes of objects under a lake root."""

    def __init__(self, loc: Location, counters: IOCounters | None = None):
        self.loc = loc
        self.counters = counters or IOCounters()
        self.fs = _make_fs(loc)

    # -- reads -------------------------------------------------------------------------------
    def _stream_requests(self, n: int) -> int:
        """Return the requests a streamed whole-object read costs (S3: a HEAD, then a GET per 8 MiB)."""
        if self.loc.is_local:
            return 1
        return 1 + max(1, -(-n // (8 << 20)))

    def read_bytes(self, uri: str) -> bytes:
        """Return the whole object at ``uri`` (one GET: on S3 a plain GetObject, no HEAD before it)."""
        if not self.loc.is_local:
            return self._s3_get(uri)
        try:
            with self.fs.open_input_stream(self.loc.fs_path(uri)) as f:
                data = f.read()
        except FileNotFoundError as e:
            raise StorageError(f"object not found: {uri}") from e
        except Exception as e:
            raise wrap_io_error(e, f"reading {uri}") from e
        self.counters.add(gets=1, bytes_read=len(data))
        return data

    def _s3_get(self, uri: str) -> bytes:
        import botocore.exceptions
        bucket, _, key = self.loc.fs_path(uri).partition("/")
        try:
            resp = self._s3_client().get_object(Bucket=bucket, Key=key)
            data = resp["Body"].read()
        except botocore.exceptions.ClientError as e:
            self.counters.add(gets=1)
            if _status(e) == 404:
                raise StorageError(f"object not found: {uri}") from e
            raise wrap_io_error(e, f"reading {uri}") from e
        except Exception as e:
            raise wrap_io_error(e, f"reading {uri}") from e
        self.counters.add(gets=1, bytes_read=len(data))
        return data

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes of ``uri`` from ``offset`` (one ranged GET)."""
        try:
            with self.fs.open_input_file(self.loc.fs_path(uri)) as f:
                data = f.read_at(length, offset)
        except FileNotFoundError as e:
            raise StorageError(f"object not found: {uri}") from e
        except Exception as e:
            raise wrap_io_error(e, f"reading {uri}") from e
        self.counters.add(gets=1, bytes_read=len(data))
        return data

    def download(self, uri: str, local_path: str) -> int:
        """Copy the object at ``uri`` to ``local_path`` (one streamed GET); return its size."""
        n = 0
        try:
            dst = open(local_path, "wb")
        except OSError as e:  # the local side: its errno stays reachable as the cause
            raise StorageError(f"downloading {uri}: cannot write the local file {local_path}: {e}") from e
        with dst:
            try:
                src = self.fs.open_input_stream(self.loc.fs_path(uri))
            except FileNotFoundError as e:
                raise StorageError(f"object not found: {uri}") from e
            except Exception as e:
                raise wrap_io_error(e, f"downloading {uri}") from e
            with src:
                while True:
                    try:
                        chunk = src.read(8 << 20)
                    except Exception as e:  # pyarrow raises OSError, ArrowInvalid...
                        raise wrap_io_error(e, f"downloading {uri}") from e
                    if not chunk:
                        break
                    try:
                        dst.write(chunk)
                    except OSError as e:
                        raise StorageError(f"downloading {uri}: cannot write the local file {local_path}: {e}") from e
                    n += len(chunk)
        self.counters.add(gets=self._stream_requests(n), bytes_read=n)
        return n

    def read_json(self, uri: str):
        """Return the parsed JSON object at ``uri``."""
        data = self.read_bytes(uri)
        try:
            return json.loads(data)
        except ValueError as e:
            raise StorageError(f"{uri} is not valid JSON: {e}") from e

    def head(self, uri: str) -> bool:
        """Return True if an object exists at ``uri`` (S3: one HeadObject; folders do not count)."""
        if self.loc.is_local:
            return os.path.isfile(uri)
        import botocore.exceptions
        bucket, _, key = self.loc.fs_path(uri).partition("/")
        try:
            self._s3_client().head_object(Bucket=bucket, Key=key)
            found = True
        except botocore.exceptions.ClientError as e:
            if _status(e) != 404:
                raise wrap_io_error(e, f"checking {uri}") from e
            found = False
        except Exception as e:
            raise wrap_io_error(e, f"checking {uri}") from e
        finally:
            self.counters.add(gets=1)  # HEAD is billed like a GET
        return found

    def exists(self, uri: str) -> bool:
        """Return True if an object (or local folder) exists at ``uri``."""
        try:
            info = self.fs.get_file_info(self.loc.fs_path(uri))
        except Exception as e:
            raise wrap_io_error(e, f"checking {uri}") from e
        self.counters.add(gets=1)  # HEAD is billed like a GET
        return info.type != pafs.FileType.NotFound

    def size(self, uri: str) -> int:
        """Return the size in bytes of the object at ``uri``."""
        try:
            info = self.fs.get_file_info(self.loc.fs_path(uri))
        except Exception as e:
            raise wrap_io_error(e, f"checking {uri}") from e
        self.counters.add(gets=1)
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"object not found: {uri}")
        return int(info.size)

    def list(self, uri: str, recursive: bool = False) -> list[pafs.FileInfo]:
        """Return FileInfos below the folder ``uri`` (empty if it does not exist)."""
        sel = pafs.FileSelector(self.loc.fs_path(uri), recursive=recursive, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(sel)
        except Exception as e:
            raise wrap_io_error(e, f"listing {uri}") from e
        self.counters.add(lists=1)
        return infos

    def list_names(self, uri: str) -> list[str]:
        """Return the base names directly below the folder ``uri``."""
        return sorted(i.base_name for i in self.list(uri))

    # -- writes ------------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` to ``uri`` atomically (S3 PUT is atomic; locally via rename)."""
        path = self.loc.fs_path(uri)
        try:
            if self.loc.is_local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                # not mkstemp: its files are 0600, unreadable by the other users of a shared lake; 0666
                # minus the umask, like every other file of the lake (Lance's too)
                tmp = os.path.join(os.path.dirname(path), f".tmp-{uuid.uuid4().hex}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, path)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
                    raise
            else:  # one PutObject (pyarrow's output stream would make a 3-request multipart upload)
                bucket, _, key = path.partition("/")
                body = data if isinstance(data, (bytes, bytearray)) else memoryview(data).tobytes()  # e.g. pa.Buffer
                self._s3_client().put_object(Bucket=bucket, Key=key, Body=body)
        except Exception as e:
            raise wrap_io_error(e, f"writing {uri}") from e
        self.counters.add(puts=1, bytes_written=len(data))

    def write_json(self, uri: str, obj) -> None:
        """Write ``obj`` as JSON to ``uri``."""
        self.write_bytes(uri, json.dumps(obj, indent=1, sort_keys=True).encode())

    def put_if_absent(self, uri: str, data: bytes) -> bool:
        """Create the object ``uri`` with ``data`` only if no object exists there; return True if this call
        created it, False if one already existed (whoever wrote it).

        The check and the write are one atomic step: on S3 a PUT with ``If-None-Match: *`` (AWS S3, MinIO,
        SeaweedFS), locally a hard link of a fully written temporary file (``link`` fails if the name
        exists). Concurrent callers on one name: exactly one gets True. This is what claims, leases and
        commit records rely on; a read-then-write would be a race.

        A request whose answer was lost (a timeout) is retried; when the retry finds the name taken, the
        object is read back: holding exactly ``data`` it is this call's own first attempt (True). So give
        each claimant distinct bytes (an owner token) when two claimants could write identical ones.
        """
        path = self.loc.fs_path(uri)
        if self.loc.is_local:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = os.path.join(os.path.dirname(path), f".tmp-{uuid.uuid4().hex}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    try:
                        os.link(tmp, path)
                        created = True
                    except FileExistsError:
                        created = False
                finally:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
            except OSError as e:
                raise wrap_io_error(e, f"creating {uri}") from e
            self.counters.add(puts=1, bytes_written=len(data) if created else 0)
            return created
        import botocore.exceptions
        bucket, _, key = path.partition("/")
        try:
            self._s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            created = True
        except botocore.exceptions.ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            meta = e.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                # After a retry, "exists" may be our own first attempt, which landed although its answer
                # was lost (a timeout): the object then holds exactly our bytes.
                created = bool(meta.get("RetryAttempts")) and self._holds(uri, data)
            else:
                raise wrap_io_error(e, f"creating {uri}") from e
        except Exception as e:
            raise wrap_io_error(e, f"creating {uri}") from e
        finally:
            self.counters.add(puts=1)
        if created:
            self.counters.add(bytes_written=len(data))
        return created

    def _holds(self, uri: str, data: bytes) -> bool:
        """Return True if the object at ``uri`` holds exactly ``data`` (False if it is gone)."""
        try:
            return self.read_bytes(uri) == data
        except StorageError as e:
            if "object not found" in str(e):
                return False
            raise

    def put_json_if_absent(self, uri: str, obj) -> bool:
        """``put_if_absent`` of ``obj`` as JSON."""
        return self.put_if_absent(uri, json.dumps(obj, indent=1, sort_keys=True).encode())

    def _s3_client(self):
        """A botocore S3 client for requests pyarrow cannot make (conditional puts); made once per store."""
        c = getattr(self, "_botocore", None)
        if c is None:
            import botocore.config
            import botocore.session
            o = self.loc.options
            cfg = botocore.config.Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                                         **self.loc.deadline.botocore_config_kwargs())
            kw = {}
            if o.get("aws_access_key_id"):
                kw = dict(aws_access_key_id=o["aws_access_key_id"], aws_secret_access_key=o.get("aws_secret_access_key"),
                          aws_session_token=o.get("aws_session_token") or None)
            c = botocore.session.get_session().create_client(
                "s3", endpoint_url=o.get("aws_endpoint") or None, region_name=o.get("aws_region", "us-east-1"),
                config=cfg, **kw)
            self._botocore = c
        return c

    def delete(self, uri: str) -> None:
        """Delete one object (missing is fine)."""
        if not self.loc.is_local:  # one DeleteObject (S3 answers 204 for a missing key too)
            bucket, _, key = self.loc.fs_path(uri).partition("/")
            try:
                self._s3_client().delete_object(Bucket=bucket, Key=key)
            except Exception as e:
                raise wrap_io_error(e, f"deleting {uri}") from e
            self.counters.add(deletes=1)
            return
        try:
            self.fs.delete_file(self.loc.fs_path(uri))
        except FileNotFoundError:
            return
        except Exception as e:
            raise wrap_io_error(e, f"deleting {uri}") from e
        self.counters.add(deletes=1)

    def delete_tree(self, uri: str) -> None:
        """Delete a folder and everything below it (missing is fine)."""
        path = self.loc.fs_path(uri)
        try:
            self.fs.delete_dir(path)
        except FileNotFoundError:
            return
        except Exception as e:
            if "not found" in str(e).lower() or "does not exist" in str(e).lower():
                return
            raise wrap_io_error(e, f"deleting {uri}") from e
        self.counters.add(deletes=1)

    def check_reachable(self) -> None:
        """Raise a clear StorageError/CredentialsError if the root cannot be listed."""
        if self.loc.is_local:
            parent = self.loc.uri
            while parent and not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if parent and not os.access(parent, os.W_OK):
                raise StorageError(f"lake path {self.loc.uri} is not writable (checked {parent})")
            if os.path.exists(self.loc.uri) and not os.path.isdir(self.loc.uri):
                raise StorageError(f"lake path {self.loc.uri} exists and is not a folder")
            return
        try:
            self.fs.get_file_info(pafs.FileSelector(self.loc.fs_path(self.loc.uri), allow_not_found=True))
        except Exception as e:
            raise wrap_io_error(e, f"connecting to {self.loc.uri}") from e
        self.counters.add(lists=1)


def _status(e) -> int | None:
    """The HTTP status of a botocore ClientError (404 for a missing key, whatever its error code)."""
    try:
        return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    except (TypeError, ValueError, AttributeError):
        return None


def new_id() -> str:
    """Return a fresh random hex id for files and transactions."""
    return uuid.uuid4().hex
