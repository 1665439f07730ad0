"""Open, scan and commit Lance datasets with lakevec's options, turning Lance errors into ours."""
from __future__ import annotations

import lance

from ..errors import CommitConflictError, CredentialsError, InvalidArgumentError, LakevecError, StorageError
from .accounting import IOCounters
from .objects import wrap_io_error


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
    """Open the Lance dataset at ``uri`` (optionally at ``version``)."""
    try:
        return lance.dataset(uri, version=version, storage_options=storage_options, session=_session())
    except Exception as e:
        err = wrap_io_error(e, f"opening {what or uri}")
        text = str(e)
        low = text.lower()
        # a store that is unreachable or refuses us says so, whatever the path (which contains "_versions")
        if isinstance(err, CredentialsError) or "unreachable" in str(err) or "bucket does not exist" in str(err):
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
                                      f"committed, retry the job ({str(e).splitlines()[0][:200]})") from e
        raise wrap_io_error(e, what) from e


def drain_io_stats(ds: lance.LanceDataset, counters: IOCounters) -> None:
    """Add the dataset's Lance I/O since the last call to ``counters``."""
    try:
        counters.add_lance_stats(ds.io_stats_incremental())
    except Exception:  # accounting must never break a read
        pass
