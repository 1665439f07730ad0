"""Small argument checks shared by the library, the CLI and the jobs: one wording everywhere.

    from lakevec.checks import positive_int, one_of, require
    k = positive_int(k, "k")                          # InvalidArgumentError: k must be a positive integer, got 0
    nprobe = positive_int(nprobe, "nprobe", optional=True)   # None passes through
    metric = one_of(metric, "metric", ("l2", "cosine", "dot"))
    pyspark = require("pyspark", extra="spark", what="engine='spark'")   # LakevecError naming the extra

Every check returns the normalised value (a plain ``int`` for numpy integers) or raises
``InvalidArgumentError`` (a ``ValueError`` too). ``name`` is how the caller spells the argument: the CLI
passes ``"--nprobe"``, the library ``"nprobe"``.
"""
from __future__ import annotations

import importlib
import importlib.util
import numbers

from .errors import InvalidArgumentError, LakevecError

__all__ = ["MissingExtraError", "non_negative_int", "one_of", "positive_int", "require"]


def _int(value, name: str) -> int:
    # bool is an int subclass, and 2.0 or "3" are not integers: refuse them all
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    return int(value)


def positive_int(value, name: str, *, optional: bool = False, maximum: int | None = None) -> int | None:
    """Return ``value`` as an int >= 1 (and <= ``maximum``); ``None`` is allowed when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidArgumentError(f"{name} must be at most {maximum:,}, got {value!r}")
    return int(value)


def non_negative_int(value, name: str, *, optional: bool = False) -> int | None:
    """Return ``value`` as an int >= 0; ``None`` is allowed when ``optional``."""
    if value is None and optional:
        return None
    v = _int(value, name)
    if v < 0:
        raise InvalidArgumentError(f"{name} must be zero or a positive integer, got {value!r}")
    return v


def one_of(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices`` (compared as given), else raise."""
    choices = tuple(choices)
    if value not in choices:
        raise InvalidArgumentError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")
    return value


class MissingExtraError(LakevecError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def _missing(module: str, extra: str, what: str | None) -> MissingExtraError:
    need = f"{what} needs" if what else "this needs"
    return MissingExtraError(f"{need} the Python package {module.split('.')[0]!r}, which is not installed; "
                             f"install it with pip install 'lakevec[{extra}]'")


def require(module: str, extra: str, what: str | None = None, load: bool = True):
    """Import and return ``module``, or raise MissingExtraError naming ``pip install 'lakevec[extra]'``.

    ``what`` says what needed it (``"engine='spark'"``, ``"the embedded S3 server"``). With ``load=False``
    only check that the package is installed (no import cost) and return None.
    """
    top = module.split(".")[0]
    if not load:
        if importlib.util.find_spec(top) is None:
            raise _missing(module, extra, what)
        return None
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != top:
            raise  # the module exists, but something it imports is broken: not a missing extra
        raise _missing(module, extra, what) from e
