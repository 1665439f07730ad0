"""Table maintenance jobs, each committing through ``lakevec.commit``:

- ``compact``: merge small fragments within each IVF partition (never across), re-cluster unassigned rows
  into their partitions, merge id runs;
- ``optimize``: keep the IVF index of a growing table healthy: measure imbalance, drift and unassigned rows;
  past a threshold split/merge partitions locally and re-calibrate nprobe (or rebuild with ``retrain``);
- ``vacuum``: remove old versions and the files and lakevec objects no kept version and no running job can
  use (minimum retention 7 days unless forced).
"""
from .compact import compact, plan_compaction
from .optimize import optimize
from .vacuum import MIN_RETENTION, vacuum

__all__ = ["compact", "plan_compaction", "optimize", "vacuum", "MIN_RETENTION"]
