#!/usr/bin/env python
"""lakevec job: duplicate groups of an indexed table, on Ray.

    ray job submit -- python jobs/ray_dedup.py --lake s3://bucket/lake --table docs --threshold 0.02 --output s3://bucket/dups/
    python jobs/ray_dedup.py --help

Storage options come from the AWS_* environment. See lakevec/join/jobs.py for the arguments, the JSON summary
printed on success and the exit codes (0 ok, 1 lakevec error, 2 unexpected, 130 interrupted).
"""
import os
import sys


if __name__ == "__main__":
    try:
        from lakevec.join.jobs import main
    except ImportError:  # run from a source checkout without installing lakevec
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from lakevec.join.jobs import main
    sys.exit(main("ray", "dedup"))
