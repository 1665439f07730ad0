"""What every ``lakevec`` command shares: lake options, opening the lake, progress lines, small parsers.

For command authors (a command is a module ``lakevec/cli/<name>_cmd.py`` with ``register(subparsers)``
and ``run(args) -> dict``; see ``lakevec.cli.main``)::

    from . import common

    def register(subparsers):
        p = subparsers.add_parser("stats", help="...", description="...")
        common.add_lake_options(p)            # --lake, --storage-option, --cache-dir, --cache-bytes
        p.add_argument("table")
        p.set_defaults(func=run)

    def run(args) -> dict:
        lake = common.open_lake(args)         # lakevec.Lake; NotALakeError if nothing is there
        with common.progress(args, "reading statistics") as prog:
            prog.update("3 partitions")       # optional live status
            ...
        return {"table": args.table, ...}     # printed as JSON with --json, else as a summary

    def format_text(result) -> str: ...       # optional: the readable summary (default: key: value lines)

Lake options (also accepted before the command: ``lakevec --lake s3://b/lake stats t``):

- ``--lake URI`` or env ``LAKEVEC_LAKE``: a local path or ``s3://bucket/prefix``.
- ``--storage-option KEY=VALUE`` (repeatable): Lance-style keys (``aws_endpoint``, ``aws_region``,
  ``allow_http``, ``aws_use_default_chain`` ...). Keys that are not given come from the standard AWS
  environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
  ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``), resolved by ``lakevec.store.location``.
- ``--cache-dir DIR`` / env ``LAKEVEC_CACHE_DIR``; ``--cache-bytes SIZE`` / env ``LAKEVEC_CACHE_BYTES``
  (``8G``, ``500MiB``, ``1e9``).

Progress goes to stderr (``lakevec.cli.display``): a live tqdm line (phase, percentage, counts, elapsed
time) on a terminal; otherwise (not a TTY, or ``--json``) one line per finished phase and step; nothing
with ``--quiet``. A failed step prints nothing, so the command's error line is the last line.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import InvalidArgumentError
from .display import Step, fmt_seconds  # noqa: F401 - fmt_seconds is part of this module's face

ENV_LAKE = "LAKEVEC_LAKE"
ENV_CACHE_DIR = "LAKEVEC_CACHE_DIR"
ENV_CACHE_BYTES = "LAKEVEC_CACHE_BYTES"


class UsageError(InvalidArgumentError):
    """The command line is incomplete or inconsistent (exit code 2, like argparse's own errors)."""


# -- options ---------------------------------------------------------------------------------------

def add_lake_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Add --lake, --storage-option, --cache-dir and --cache-bytes to ``parser``.

    Sub-command parsers get ``SUPPRESS`` defaults so a value given before the command
    (``lakevec --lake X ingest ...``) is not overwritten by the sub-parser's default.
    """
    d = (lambda v: v) if top_level else (lambda v: argparse.SUPPRESS)
    g = parser.add_argument_group("lake options")
    g.add_argument("--lake", metavar="URI", default=d(None),
                   help=f"lake root: a local path or s3://bucket/prefix (default: ${ENV_LAKE})")
    g.add_argument("--storage-option", metavar="KEY=VALUE", action="append", dest="storage_option",
                   default=d(None), help="object-store option, repeatable (e.g. aws_endpoint=http://host:9000, "
                                         "aws_use_default_chain=true); missing keys come from AWS_* env vars")
    g.add_argument("--cache-dir", metavar="DIR", default=d(None),
                   help=f"NVMe cache folder (default: ${ENV_CACHE_DIR}; none: no cache)")
    g.add_argument("--cache-bytes", metavar="SIZE", default=d(None),
                   help=f"cache byte budget, e.g. 8G or 500MiB (default: ${ENV_CACHE_BYTES} or 8 GiB)")


def add_output_options(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """Add --json, --quiet and --debug (main adds them to the top parser and to every command)."""
    d = (lambda v: v) if top_level else (lambda v: argparse.SUPPRESS)
    g = parser.add_argument_group("output options")
    g.add_argument("--json", action="store_true", default=d(False),
                   help="print a JSON summary on stdout instead of the readable one")
    g.add_argument("--quiet", "-q", action="store_true", default=d(False), help="no progress lines on stderr")
    g.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks of errors")


def lake_uri(args) -> str:
    """Return the lake URI from --lake or $LAKEVEC_LAKE, or raise UsageError."""
    uri = getattr(args, "lake", None) or os.environ.get(ENV_LAKE)
    if not uri:
        raise UsageError(f"no lake given: pass --lake URI or set {ENV_LAKE} (a local path or s3://bucket/prefix)")
    return uri


def storage_options(args) -> dict | None:
    """Return the storage options of --storage-option KEY=VALUE pairs (None when there are none)."""
    pairs = getattr(args, "storage_option", None) or []
    opts: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise UsageError(f"--storage-option {item!r}: expected KEY=VALUE, e.g. aws_region=eu-west-1")
        opts[key] = value.strip()
    return opts or None


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text, what: str = "size") -> int:
    """Parse a byte count: ``1048576``, ``1e9``, ``512M``, ``8G``, ``8GiB``, ``1.5TB`` (powers of 1024)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"{what} {text!r} is not a size: use bytes or a suffix K, M, G, T (e.g. 8G)")
    power = " KMGTP".index((m.group(2) or " ").upper())
    value = float(m.group(1)) * 1024 ** power
    if value < 0 or value != value:
        raise UsageError(f"{what} {text!r} must be a non-negative number of bytes")
    return int(value)


def cache_settings(args) -> tuple[str | None, int | None]:
    """Return (cache_dir, cache_bytes) from the options or their environment variables."""
    cache_dir = getattr(args, "cache_dir", None) or os.environ.get(ENV_CACHE_DIR) or None
    raw = getattr(args, "cache_bytes", None) or os.environ.get(ENV_CACHE_BYTES) or None
    return cache_dir, (parse_size(raw, "--cache-bytes") if raw is not None else None)


def open_lake(args, create: bool = False):
    """Open the lake named by the options; with ``create`` make a new lake if there is none yet.

    Without ``create`` a URI that holds no lake raises NotALakeError (a typo must not create a lake).
    """
    from ..errors import NotALakeError
    from ..lake import Lake

    uri = lake_uri(args)
    cache_dir, cache_bytes = cache_settings(args)
    try:
        return Lake(uri, storage_options=storage_options(args), cache_dir=cache_dir, cache_bytes=cache_bytes,
                    create=create)
    except NotALakeError as e:
        if create or "missing" not in str(e):
            raise
        raise NotALakeError(f"{e}; check --lake, or create it with `lakevec ingest TABLE SOURCE... --create`") from e


ENGINE_EXTRAS = {"spark": ("pyspark", "spark"), "ray": ("ray", "ray")}


def require_engine(engine: str) -> None:
    """Raise a LakevecError naming the extra to install when ``engine``'s package is missing."""
    if engine in ENGINE_EXTRAS:
        from ..checks import require
        module, extra = ENGINE_EXTRAS[engine]
        require(module, extra, f"--engine {engine}", load=False)


def split_list(values) -> list[str] | None:
    """Flatten repeated/comma-separated option values (``--columns a,b --columns c``) into a list."""
    if not values:
        return None
    if isinstance(values, str):
        values = [values]
    out = [v.strip() for item in values for v in str(item).split(",") if v.strip()]
    return out or None


# -- progress --------------------------------------------------------------------------------------

def progress_mode(args) -> str:
    """Return "off" (--quiet), "tty" (live line on a terminal) or "lines" (coarse lines)."""
    if getattr(args, "quiet", False):
        return "off"
    if getattr(args, "json", False):
        return "lines"
    try:
        return "tty" if sys.stderr.isatty() else "lines"
    except (AttributeError, ValueError):
        return "lines"


def fmt_bytes(n) -> str:
    """Return a byte count as ``812 B``, ``1.5 KB``, ``3.2 MB``, ``1.1 GB`` (powers of 1000)."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


Progress = Step  # the former name of a command's step


def progress(args, label: str, status=None) -> Step:
    """Return the context manager of one step of a command, in the mode the options ask for.

    The step is also a ``lakevec.progress.Progress`` reporter: pass it as ``progress=`` to a library call
    (see ``call_with_progress``) and that call's phases show inside the step.
    """
    return Step(label, progress_mode(args), status=status)


def call_with_progress(fn, step, *args, **kwargs):
    """Call ``fn(*args, progress=step, **kwargs)``; if ``fn`` takes no ``progress`` argument (yet), call it
    without: the step then shows only its own elapsed time and status."""
    try:
        return fn(*args, progress=step, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument 'progress'" not in str(e):
            raise
    return fn(*args, **kwargs)


def note(args, text: str) -> None:
    """Write an informational line to stderr (not with --quiet)."""
    if progress_mode(args) != "off":
        print(f"lakevec: {text}", file=sys.stderr, flush=True)


def search_stats(stats: dict | None) -> dict:
    """Return the counts of ``table.last_search_stats`` under stable names (missing ones are None).

    ``rows_read``: rows of the partitions read; ``distances``: query x row distances computed;
    ``requests``: object-store GET + LIST requests; ``bytes_read``: from the store (not the cache).
    """
    s = dict(stats or {})
    io = s.get("io") or {}
    rows = s.get("rows_read", s.get("rows_scored"))
    return {
        "nprobe": s.get("nprobe"),
        "seconds": s.get("seconds"),
        "partitions_read": s.get("partitions_read"),
        "fragments_read": s.get("fragments_read"),
        "rows_read": rows,
        "distances": s.get("distances"),
        "bytes_read": io.get("bytes_read"),
        "requests": (io.get("gets") or 0) + (io.get("lists") or 0) if io else None,
        "cache_bytes_read": io.get("cache_bytes_read"),
        "cache_hit_ratio": io.get("cache_hit_ratio"),
        "estimated_cost_usd": io.get("estimated_cost_usd"),
    }
