"""Spark DataFrames and Ray Datasets on either side of a join (filled in below)."""
from __future__ import annotations

import sys


def frame_kind(x) -> str | None:
    """Return "spark" / "ray" if ``x`` is a Spark DataFrame / Ray Dataset (without importing either)."""
    if "pyspark" in sys.modules:
        from pyspark.sql import DataFrame
        if isinstance(x, DataFrame):
            return "spark"
    if "ray" in sys.modules:
        try:
            from ray.data import Dataset
        except Exception:  # pragma: no cover
            return None
        if isinstance(x, Dataset):
            return "ray"
    return None
