#!/usr/bin/env python
"""lakevec job: ingest Parquet files (local or s3://) into a table on Ray.

    ray job submit --working-dir . -- \
        python jobs/ray_ingest.py --lake s3://bucket/lake --table docs --dim 384 s3://bucket/in/
    python jobs/ray_ingest.py --help

Storage options come from the AWS_* environment. See lakevec/jobs.py for the arguments, the JSON
summary printed on success and the exit codes (0 ok, 1 lakevec error, 2 unexpected, 130 interrupted).
"""
import os
import sys


if __name__ == "__main__":
    try:
        from lakevec.jobs import main
    except ImportError:  # run from a source checkout without installing lakevec
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from lakevec.jobs import main
    sys.exit(main("ray", "ingest"))
