"""Cache files on local disk: names, counted downloads with a running checksum, atomic publish, checks.

A cached object lives at ``<cache_dir>/objects/<h[:2]>/<h><ext>`` where ``h`` is the SHA-256 of its
object URI (the URI is the key; objects are immutable, so the name never needs a version). A
download streams into ``<cache_dir>/tmp/<random>.part`` while computing the CRC-32 of the bytes, and is
published with ``os.replace`` (atomic on POSIX): a reader sees either no file or the whole file, never
a torn one.

Downloads use ``ObjectStore.fs`` directly so local failures (disk full, cache folder deleted) can be
told apart from object-store failures: the first raise :class:`LocalWriteError` (the cache degrades,
the read goes on without it), the second the store's own lakevec errors. Requests are counted exactly
as the server sees them: pyarrow's S3 ``open_input_file`` issues one HEAD (billed like a GET) and each
``read_at`` one ranged GET.
"""
from __future__ import annotations

import errno
import hashlib
import os
import uuid
import zlib

from ..errors import StorageError
from ..store.objects import ObjectStore, wrap_io_error

READ_PART = 64 << 20  # bytes per ranged GET when downloading (bounds memory; most objects take one)
CRC_CHUNK = 8 << 20

#: errno values that mean "the local disk cannot take this file" rather than a bug
LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                errno.EIO, errno.EFBIG, errno.ENOTDIR, errno.ESTALE}


class LocalWriteError(Exception):
    """Writing to the cache folder failed (disk full, folder deleted, read-only...)."""


def object_relpath(key: str) -> str:
    """Return the path, relative to ``objects/``, of the cached copy of the object ``key`` (its URI)."""
    h = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    ext = os.path.splitext(key.rsplit("/", 1)[-1])[1]
    ext = ext if (len(ext) <= 16 and ext[1:].isalnum()) else ""
    return f"{h[:2]}/{h}{ext}"


def crc_of_file(path: str) -> tuple[int, int]:
    """Return (size, CRC-32) of the file at ``path`` (reads it once; zlib releases the GIL)."""
    crc = 0
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(CRC_CHUNK)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            n += len(chunk)
    return n, crc


def identity(st: os.stat_result) -> tuple:
    """Return what changes whenever a file is replaced, truncated or written: device, inode, size, times."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def new_temp_path(tmp_dir: str) -> str:
    return os.path.join(tmp_dir, f"{uuid.uuid4().hex}.part")


def download(store: ObjectStore, uri: str, dest: str, expected_size: int | None = None) -> tuple[int, int]:
    """Copy the object ``uri`` to the new local file ``dest``; return (size, CRC-32).

    Counts one HEAD plus one GET per ``READ_PART`` bytes on ``store.counters`` (also when it fails part
    way: those requests were made). Raises LocalWriteError when the local side fails (``dest`` is
    removed), a lakevec StorageError when the store does.
    """
    path = store.loc.fs_path(uri)
    try:
        out = open(dest, "wb")
    except OSError as e:
        raise LocalWriteError(f"cannot create {dest}: {e}") from e
    gets = 0
    got = 0
    crc = 0
    ok = False
    try:
        try:
            src = store.fs.open_input_file(path)
        except FileNotFoundError as e:
            raise StorageError(f"object not found: {uri}") from e
        except Exception as e:
            raise wrap_io_error(e, f"reading {uri}") from e
        finally:
            gets += 1  # the HEAD that open_input_file issues
        try:
            size = src.size()
            if expected_size and size != expected_size:
                raise StorageError(f"{uri}: the object has {size} bytes, the table metadata says "
                                   f"{expected_size}: refusing to cache it")
            while got < size:
                want = min(READ_PART, size - got)
                try:
                    gets += 1
                    chunk = src.read_at(want, got)
                except Exception as e:
                    raise wrap_io_error(e, f"reading {uri}") from e
                if len(chunk) != want:
                    raise StorageError(f"{uri}: short read ({len(chunk)} of {want} bytes at offset {got})")
                crc = zlib.crc32(chunk, crc)
                try:
                    out.write(chunk)
                except OSError as e:
                    raise LocalWriteError(f"writing {dest}: {e}") from e
                got += len(chunk)
        finally:
            src.close()
        try:
            out.close()
        except OSError as e:
            raise LocalWriteError(f"writing {dest}: {e}") from e
        ok = True
        return got, crc
    finally:
        store.counters.add(gets=gets, bytes_read=got)
        if not ok:
            try:
                out.close()
            except OSError:
                pass
            try:
                os.unlink(dest)
            except OSError:
                pass


def is_local_error(e: BaseException) -> bool:
    """Return True if ``e`` (or its cause) is an OSError of the local disk, not of the store."""
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, LocalWriteError):
            return True
        if isinstance(e, OSError) and getattr(e, "errno", None) in LOCAL_ERRNOS and getattr(e, "filename", None):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def remove_quietly(path: str) -> bool:
    """Unlink ``path``; return True if a file was removed."""
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
