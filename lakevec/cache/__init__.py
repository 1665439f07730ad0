"""The NVMe hot tier (placeholder until the cache issue lands): no cache configured."""
from __future__ import annotations


def open_cache(lake):
    """Return the lake's cache object, or None when no cache_dir is configured."""
    return None
