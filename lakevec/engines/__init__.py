"""Engines schedule task records and collect results; they never contain job logic.

``get_engine("local" | "ray" | "spark")`` returns an object with ``map(fn, tasks, name=...)``: run the
picklable task function ``fn`` on every task record and return the results in task order.
Ray and Spark are imported only when their engine is asked for.

Engine options (where to find the cluster, how many CPUs, retries) come from, in order: the
keyword arguments of ``get_engine``, the defaults set with ``configure(name, **options)`` (or the
``engine_options`` context manager), then the engine's own defaults; see ``engines/ray.py`` and
``engines/spark.py``. ``get_engine`` also accepts an engine object and returns it unchanged, so jobs
can be handed a configured engine (``t.add(paths, engine=RayEngine(address=...))``).
"""
from __future__ import annotations

import contextlib

from ..errors import InvalidArgumentError

ENGINES = ("local", "ray", "spark")

_defaults: dict[str, dict] = {name: {} for name in ENGINES}


def configure(name: str, **options) -> None:
    """Set default options of engine ``name`` for this process (e.g. ``configure("ray", address="auto")``)."""
    if name not in ENGINES:
        raise InvalidArgumentError(f"unknown engine {name!r}: expected one of {ENGINES}")
    _defaults[name] = dict(options)


@contextlib.contextmanager
def engine_options(name: str, **options):
    """Use ``options`` as the defaults of engine ``name`` inside a ``with`` block."""
    if name not in ENGINES:
        raise InvalidArgumentError(f"unknown engine {name!r}: expected one of {ENGINES}")
    old = _defaults[name]
    _defaults[name] = {**old, **options}
    try:
        yield
    finally:
        _defaults[name] = old


def engine_name(engine) -> str:
    """Return the name of an engine given by name or as an object."""
    return engine if isinstance(engine, str) else getattr(engine, "name", type(engine).__name__)


def get_engine(name, **options):
    """Return the engine called ``name`` (or ``name`` itself if it is already an engine object)."""
    if not isinstance(name, str):
        if callable(getattr(name, "map", None)):
            return name
        raise InvalidArgumentError(f"engine must be one of {ENGINES} or an engine object, got {name!r}")
    if name not in ENGINES:
        raise InvalidArgumentError(f"unknown engine {name!r}: expected one of {ENGINES}")
    opts = {**_defaults.get(name, {}), **options}
    if name == "local":
        from .local import LocalEngine
        return LocalEngine(**opts)
    if name == "ray":
        from .ray import RayEngine
        return RayEngine(**opts)
    from .spark import SparkEngine
    return SparkEngine(**opts)


def task_bytes_for(engine, total_bytes: int, default: int, minimum: int = 16 << 20) -> int:
    """Return the data size per task for a job of ``total_bytes`` under ``engine``.

    The local engine keeps ``default`` (one big task uses all cores through BLAS); distributed engines
    get about one task per core so that the job actually runs in parallel.
    """
    eng = get_engine(engine) if isinstance(engine, str) else engine
    pick = getattr(eng, "task_bytes", None)
    return int(pick(total_bytes, default, minimum)) if pick is not None else int(default)
