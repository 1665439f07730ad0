"""Open, scan and commit Lance datasets with lakevec's options, turning Lance errors into ours.

``scan`` reads a table through Lance's scanner with the same error wrapping (use it for every scan:
a bare ``to_table()`` raises ArrowInvalid/OSError on a store outage). Every call is bounded: the storage options carry the per-request timeouts of ``store.deadline``, and
opening a dataset on an object store is also cut at the lake's ``store_timeout`` (``call_with_deadline``).
"""
from __future__ import annotations

import lance

from ..errors import CommitConflictError, CredentialsError, InvalidArgumentError, LakevecError, StorageError
from .accounting import IOCounters
from .deadline import call_with_deadline, resolve_store_timeout
from .objects import clean_error_text, wrap_io_error


_SESSION = None


def _session():
    """Return one Lance Session per process: re-opening a dataset then reuses its cached metadata."""
    global _SESSION
    if _SESSION is None:
        try:
            _SESSION = lance.Session()
        except Exception:  # pragma: no cover - older pylance
            _SESSION = False
    return _SESSION or None


def open_dataset(uri: str, storage_options: dict | None, version: int | None = None,
                 what: str | None = None) -> lance.LanceDataset:
    """Open the Lance dataset at ``uri`` (optionally at ``version``); on an object store (options given),
    fail with StorageError once the lake's ``store_timeout`` has passed."""
    deadline = resolve_store_timeout(storage_options) if storage_options is not None else None
    label = f"{what} at {uri}" if what else uri
    try:
        return call_with_deadline(
            lambda: lance.dataset(uri, version=version, storage_options=storage_options, session=_session()),
            deadline, f"opening {label}")
    except LakevecError:
        raise
    except Exception as e:
        err = wrap_io_error(e, f"opening {label}")
        text = str(e)
        low = text.lower()
        # a store that is unreachable or refuses us says so, whatever the path (which contains "_versions")
        if isinstance(err, CredentialsError) or any(s in str(err) for s in ("unreachable", "bucket does not exist",
                                                                             "did not answer")):
            raise err from e
        if version is not None and (f"_versions/{version}.manifest" in text or "version" in low
                                    and "not found" in low and "manifest" in low):
            raise InvalidArgumentError(f"{what or uri}: version {version} does not exist") from e
        if "not found" in low:
            raise StorageError(f"{what or uri}: no Lance dataset at {uri} (not found)") from e
        raise err from e


def commit(uri: str, operation, read_version: int, storage_options: dict | None, what: str,
           max_retries: int = 20) -> lance.LanceDataset:
    """Commit ``operation`` on top of ``read_version`` (one new version) or raise a lakevec error."""
    try:
        return lance.LanceDataset.commit(uri, operation, read_version=read_version,
                                         storage_options=storage_options, max_retries=max_retries)
    except Exception as e:
        if isinstance(e, LakevecError):
            raise
        low = str(e).lower()
        if "conflict" in low or "retryable" in low or "concurrent" in low:
            raise CommitConflictError(f"{what}: a concurrent commit conflicts with this one; nothing was "
                                      f"committed, retry the job ({clean_error_text(e)[:200]})") from e
        raise wrap_io_error(e, what) from e


def drain_io_stats(ds: lance.LanceDataset, counters: IOCounters) -> None:
    """Add the dataset's Lance I/O since the last call to ``counters``."""
    try:
        counters.add_lance_stats(ds.io_stats_incremental())
    except Exception:  # accounting must never break a read
        pass


def scan(ds: lance.LanceDataset, what: str, counters: IOCounters | None = None, **scanner_kwargs):
    """Return ``ds.scanner(**scanner_kwargs).to_table()``; a failure is a lakevec error naming ``what``
    (e.g. "reading the ids of table 't'"), never a bare ArrowInvalid/OSError. Lance's reads are counted
    on ``counters``. A store outage fails it within the per-request bounds of ``store.deadline``."""
    try:
        return ds.scanner(**scanner_kwargs).to_table()
    except Exception as e:
        if "invalid user input" in str(e).lower():
            raise InvalidArgumentError(f"{what}: {clean_error_text(e).replace('Invalid user input: ', '')}") from e
        raise wrap_io_error(e, what) from e
    finally:
        if counters is not None:
            drain_io_stats(ds, counters)


def read_transaction(ds: lance.LanceDataset, version: int):
    """``ds.read_transaction(version)`` on a private handle of the dataset.

    pylance's ``read_transaction`` borrows its dataset mutably and releases the GIL while it reads: any other
    thread that touches the same ``LanceDataset`` meanwhile (even ``ds.version``) fails with "Already
    mutably borrowed". Tables share their latest dataset between threads (searches, readers, commits), so
    the transaction is read on a handle checked out for this call alone (no I/O for the version in memory).
    """
    return ds._ds.checkout_version(int(version)).read_transaction(int(version))


def file_path(df) -> str:
    """The path (relative to data/) of a Lance ``DataFile``, as a plain ``str``.

    pylance 14's ``DataFile.path`` builds a new class on every access (a deprecation shim: ~40 us); snapshots of
    tables with thousands of fragments call it for every fragment, so the stored value is read when present."""
    p = getattr(df, "_path", None)
    return p if isinstance(p, str) else str(df.path)

