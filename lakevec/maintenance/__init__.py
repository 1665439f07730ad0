"""Table maintenance jobs, each committing through ``lakevec.commit``:

- ``compact``: merge small fragments within each IVF partition (never across), re-cluster unassigned rows
  into their partitions, merge id runs;
- ``vacuum``: remove old versions and the files and lakevec objects no kept version and no running job can
  use (minimum retention 7 days unless forced).
"""
from .compact import compact, plan_compaction
from .vacuum import MIN_RETENTION, vacuum

__all__ = ["compact", "plan_compaction", "vacuum", "MIN_RETENTION"]
