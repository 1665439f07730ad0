"""An Airflow DAG for the nightly lakevec pipeline, using only the lakevec command line.

Copy it to your DAGs folder, next to jobs/nightly.toml (or point PIPELINE at yours). Each step is its own
task (``--only STEP``) so Airflow shows, retries and times them one by one; every step is idempotent, so a
retry — or two overlapping runs — commits each row and each output exactly once, and a night with no new
files commits nothing. The last task writes the run report (JSON) for monitoring.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

PIPELINE = os.environ.get("LAKEVEC_PIPELINE", os.path.join(os.path.dirname(__file__), "nightly.toml"))
REPORTS = os.environ.get("LAKEVEC_REPORTS", "/var/log/lakevec")
STEPS = ["ingest", "compact", "optimize", "dedup", "export"]  # the step names of the pipeline file

with DAG(
    dag_id="lakevec_nightly",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=5)},
    tags=["lakevec"],
) as dag:
    check = BashOperator(task_id="validate", bash_command=f"lakevec pipeline validate {PIPELINE}")
    previous = check
    for step in STEPS:
        task = BashOperator(
            task_id=step,
            bash_command=f"lakevec --json pipeline run {PIPELINE} --only {step} "
                         f"--report {REPORTS}/{{{{ ds }}}}-{step}.json",
        )
        previous >> task
        previous = task
