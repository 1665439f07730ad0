"""The notebooks in notebooks/ run top to bottom in a fresh Jupyter kernel (nbclient), draw plots and clean up.

For every ``notebooks/*.ipynb``:

- executing it in a new ``python3`` kernel raises no error and leaves no error output;
- it produces at least one plot (an ``image/png`` output);
- it leaves nothing behind in the temporary directory: the kernel gets its own ``TMPDIR``, which must be
  empty afterwards, and no new ``/tmp/lvnb-*`` folder (Ray's session folder must be short, so the
  notebooks put it directly in /tmp with that prefix) may remain;
- the notebooks stored with their outputs (all but ``OUTPUT_FREE``) hold the outputs of one clean
  top-to-bottom run: execution counts 1, 2, 3... in cell order, no error, at least one PNG, a modest size.

The kernel imports the lakevec of this checkout: ``PYTHONPATH`` starts with the repository root (under
``./dev test`` the editable install points there too). A notebook that needs files from the shared data
folder lists them in its metadata (``"lakevec": {"data": [...]}``) and is skipped when they are absent.

Re-executing and storing the outputs (after editing a notebook)::

    PYTHONPATH=. python tests/notebooks/test_notebooks.py notebooks/wordnet_similarity.ipynb [...]

(without arguments: every notebook stored with outputs). Notebooks that start Spark or Ray carry the
suite's ``spark`` / ``ray`` and ``slow`` markers.
"""
from __future__ import annotations

import copy
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need lakevec[notebooks]")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need lakevec[notebooks]")
pytest.importorskip("ipykernel", reason="the notebook tests need lakevec[notebooks]")
pytest.importorskip("matplotlib", reason="the notebook tests need lakevec[notebooks]")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
DATA_DIR = Path(os.environ.get("LAKEVEC_DATA") or os.environ.get("LAKEVEC_DATA_DIR") or REPO.parent / "shared" / "data")

CELL_TIMEOUT = 300  # seconds per cell (a loaded 2-core machine; the slowest cells take ~30 s here)
MAX_STORED_BYTES = 600_000  # a stored notebook with its outputs (PNG plots at a modest dpi, short tables)
SHORT_TMP_PREFIX = "/tmp/lvnb-"  # Ray's temporary folder (its socket paths are length-limited)

# quickstart.ipynb is stored without outputs (tests/cli asserts it) and keeps its lake, a
# lakevec-notebook-* folder in the temporary directory, for the reader to explore after the run.
OUTPUT_FREE = {"quickstart.ipynb"}
MAY_LEAVE = {"quickstart.ipynb": ("lakevec-notebook-",)}


def kernel_env(tmpdir: Path) -> dict:
    """The kernel's environment: this checkout first on PYTHONPATH, a private TMPDIR, Spark on loopback."""
    path = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "TMPDIR": str(tmpdir),
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # ipykernel's debugger warning on stderr


def execute(path: Path, tmpdir: Path, timeout: int = CELL_TIMEOUT):
    """Execute the notebook at ``path`` in a fresh kernel (cwd: its folder); return the executed notebook.

    Raises nbclient's CellExecutionError when a cell fails."""
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_env(tmpdir))
    return nb


def code_outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def errors_of(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for o in code_outputs(nb) if o.get("output_type") == "error"]


def png_count(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in code_outputs(nb))


def required_data(nb) -> list[str]:
    return list(nb.metadata.get("lakevec", {}).get("data", []))


def skip_without_data(nb, name: str) -> None:
    missing = [f for f in required_data(nb) if not (DATA_DIR / f).is_file()]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} in {DATA_DIR} (set LAKEVEC_DATA_DIR to the folder holding them)")


def short_tmp_folders() -> set[str]:
    return set(glob.glob(SHORT_TMP_PREFIX + "*"))


def marks_of(path: Path) -> list:
    """The suite's markers for a notebook that starts Spark or Ray (deselect with -m 'not spark')."""
    code = "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    marks = [m for needle, m in (("pyspark", pytest.mark.spark), ("import ray", pytest.mark.ray)) if needle in code]
    return marks + [pytest.mark.slow] if marks else marks


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name, marks=marks_of(p)) for p in NOTEBOOKS])
def test_notebook_runs_plots_and_cleans_up(path, tmp_path):
    skip_without_data(nbformat.read(str(path), as_version=4), path.name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = short_tmp_folders()
    t0 = time.time()
    nb = execute(path, scratch)
    seconds = time.time() - t0
    assert not errors_of(nb), errors_of(nb)
    assert png_count(nb) >= 1, f"{path.name} produced no plot (image/png output)"
    allowed = MAY_LEAVE.get(path.name, ())
    left = sorted(p.name for p in scratch.iterdir() if not p.name.startswith(allowed))
    assert not left, f"{path.name} left {left} in its temporary directory"
    new = sorted(short_tmp_folders() - before)
    assert not new, f"{path.name} left {new} behind"
    print(f"{path.name}: executed in {seconds:.1f}s")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name not in OUTPUT_FREE],
                         ids=[p.name for p in NOTEBOOKS if p.name not in OUTPUT_FREE])
def test_notebook_is_stored_with_the_outputs_of_a_clean_run(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{path.name}: not the outputs of one top-to-bottom run (re-execute it: see this module's docstring)"
    assert not errors_of(nb), errors_of(nb)
    assert png_count(nb) >= 1, f"{path.name} is stored without its plots"
    assert path.stat().st_size <= MAX_STORED_BYTES, f"{path.name}: {path.stat().st_size:,} bytes stored"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a title first"


def test_a_broken_notebook_fails(tmp_path):
    """The check above really fails on an error: a notebook with a failing cell raises CellExecutionError."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import lakevec\nprint(lakevec.__file__)"),
                nbformat.v4.new_code_cell("import tempfile\nlakevec.connect(tempfile.mkdtemp()).open_table('missing')")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, str(path))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with pytest.raises(nbclient.exceptions.CellExecutionError) as e:
        execute(path, scratch, timeout=120)
    assert "TableNotFoundError" in str(e.value)


def test_the_kernel_imports_this_checkout(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import lakevec\nprint(lakevec.__file__)")]
    path = tmp_path / "where.ipynb"
    nbformat.write(nb, str(path))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = execute(path, scratch, timeout=120)
    printed = "".join(o.get("text", "") for o in code_outputs(out))
    assert Path(printed.strip()).resolve() == (REPO / "lakevec" / "__init__.py").resolve()


# -- re-executing and storing the outputs ------------------------------------------------------------------

def _clean(nb):
    """Drop what changes from run to run without meaning (cell timing, widget state)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for c in nb.cells:
        c.metadata.pop("execution", None)
    return nb


def store(paths: list[Path]) -> int:
    failed = 0
    for p in paths:
        with tempfile.TemporaryDirectory(prefix="lakevec-nbrun-") as d:
            t0 = time.time()
            try:
                nb = execute(p, Path(d))
            except Exception as e:  # report and go on with the others
                print(f"{p.name}: FAILED: {str(e)[-3000:]}", file=sys.stderr)
                failed += 1
                continue
            left = os.listdir(d)
        nbformat.write(_clean(nb), str(p))
        print(f"{p.name}: executed in {time.time() - t0:.1f}s, {png_count(nb)} plot(s), "
              f"{p.stat().st_size:,} bytes" + (f"; LEFT IN TMPDIR: {left}" if left else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    args = [Path(a).resolve() for a in sys.argv[1:]]
    sys.exit(store(args or [p for p in NOTEBOOKS if p.name not in OUTPUT_FREE]))
