"""Helpers of the CLI tests."""
from __future__ import annotations

from lakevec.cli import main as cli_main


def run_cli(capsys, *argv):
    """Run ``lakevec argv`` in-process; return (exit code, stdout, stderr)."""
    code = cli_main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def lake_args(storage) -> list[str]:
    """``--lake URI --storage-option K=V ...`` for a storage fixture."""
    args = ["--lake", storage.uri]
    for k, v in (storage.storage_options or {}).items():
        args += ["--storage-option", f"{k}={v}"]
    return args
