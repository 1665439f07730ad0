"""Fixtures of the CLI tests. Helpers (``run_cli``, ``lake_args``) are in ``cli_helpers`` (this folder is put
on sys.path after tests/, so ``from conftest import`` stays tests/conftest.py)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.append(os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No AWS_* / LAKEVEC_* variables leak in: every test passes its lake and options explicitly."""
    for name in list(os.environ):
        if (name.startswith("AWS_") and name != "AWS_CA_BUNDLE") or name.startswith("LAKEVEC_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
