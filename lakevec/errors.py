"""The exception tree: every error lakevec raises derives from LakevecError.

Messages name the problem and where it is (table, row, column, file, URI). Errors coming
from Lance, pyarrow or the object store are wrapped (the original is kept as ``__cause__``).
"""
from __future__ import annotations


class LakevecError(Exception):
    """Base class of every error lakevec raises."""


class InvalidArgumentError(LakevecError, ValueError):
    """An argument has a wrong value or type (bad metric, k <= 0, wrong query shape...)."""


class InvalidNameError(InvalidArgumentError):
    """A table name or lake path is not allowed."""


class TableNotFoundError(LakevecError, KeyError):
    """The named table does not exist in the lake."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class TableExistsError(LakevecError):
    """A table of that name already exists."""


class NotALakeError(LakevecError):
    """The URI does not hold a lakevec lake (no _lakevec.json marker)."""


class ValidationError(LakevecError, ValueError):
    """Input rows are invalid (dimension, dtype, NaN/Inf, nulls, duplicate ids, schema drift).

    ``problems`` lists ``(row, column, reason)`` for the first offending rows; ``source``
    names the input (file path or "batch").
    """

    def __init__(self, message: str, problems=None, source: str | None = None):
        super().__init__(message)
        self.problems = list(problems or [])
        self.source = source


class SchemaError(ValidationError):
    """The input's columns do not match the table (missing, extra or incompatible types)."""


class StorageError(LakevecError, OSError):
    """The object store or file system failed (unreachable, permission, missing object)."""


class CredentialsError(StorageError):
    """The object store rejected or lacked credentials."""


class CommitConflictError(LakevecError):
    """Another writer committed a conflicting change; the job left no trace and can be retried."""


class IndexError_(LakevecError):
    """The IVF index is missing, stale or inconsistent with the data."""


class EngineError(LakevecError):
    """An engine (local, ray, spark) failed to run a job's tasks."""


class CacheError(LakevecError):
    """The NVMe cache could not be used (never raised on reads: the cache degrades to the store)."""
