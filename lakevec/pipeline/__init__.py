"""Scheduled pipelines: ``lakevec pipeline run pipeline.toml`` runs the nightly job — ingest new files from
landing folders -> compact -> optimize the index -> join or dedup -> export Parquet — every step idempotent
and resumable, with ``--dry-run`` (the plan with rows, bytes, requests and estimated cost) and a JSON run
report. ``spec`` is the file format, ``steps`` what each step plans and does, ``runner`` the run."""
from .runner import run
from .spec import KINDS, Pipeline, Step, load, parse

__all__ = ["run", "load", "parse", "Pipeline", "Step", "KINDS"]
