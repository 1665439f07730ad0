#!/usr/bin/env python
"""lakevec job: build the IVF index of a table on Ray.

    ray job submit --working-dir . -- \
        python jobs/ray_build_index.py --lake s3://bucket/lake --table docs --num-partitions 1024
    python jobs/ray_build_index.py --help

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
    sys.exit(main("ray", "build"))
