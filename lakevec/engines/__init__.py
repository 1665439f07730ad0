"""Engines schedule task records and collect results; they never contain job logic.

``get_engine("local" | "ray" | "spark")`` returns an object with ``map(fn, tasks, name=...)``: run the
picklable task function ``fn`` on every task record and return the results in task order.
Ray and Spark are imported only when their engine is asked for.
"""
from __future__ import annotations

from ..errors import InvalidArgumentError

ENGINES = ("local", "ray", "spark")


def get_engine(name: str, **options):
    """Return the engine called ``name``."""
    if name == "local":
        from .local import LocalEngine
        return LocalEngine(**options)
    if name == "ray":
        from .ray import RayEngine
        return RayEngine(**options)
    if name == "spark":
        from .spark import SparkEngine
        return SparkEngine(**options)
    raise InvalidArgumentError(f"unknown engine {name!r}: expected one of {ENGINES}")
