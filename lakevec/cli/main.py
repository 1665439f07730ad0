"""``lakevec``: the command line, for scheduled pipelines and quick looks.

Each command is a module ``lakevec/cli/<name>_cmd.py`` exposing ``register(subparsers)`` (adds its
sub-parser and ``set_defaults(func=run)``) and ``run(args) -> dict``, optionally ``format_text(result)
-> str`` for the readable summary. ``main`` imports the known modules by name and skips those that do
not exist (yet), so commands plug in without editing this file.

Contract of ``main(argv) -> exit code``:

- ``--json``: the dict returned by the command is printed as JSON on stdout; otherwise a readable
  summary. Progress goes to stderr (see ``common.Progress``).
- Exit codes: 0 success; 1 a lakevec error (``LakevecError``: bad input, missing table, storage...);
  2 bad usage (argparse errors, ``common.UsageError``); 3 an unexpected internal error (a bug);
  130 interrupted (Ctrl-C). A failure prints one line ``lakevec: error: <message>`` on stderr, the last
  line there (a failed step prints no progress line; usage errors print no usage block), and, with
  ``--json``, ``{"error": {...}}`` on stdout; ``--debug`` adds the traceback. Messages are shown in the
  command line's terms (``messages.for_cli``: ``--on-bad-rows skip``, not ``on_bad_rows='skip'``; no
  Rust source paths).
- A command may put ``"exit_code"`` in its result (``lakevec bench`` passes its benchmark's code on).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import math
import os
import sys
import traceback

from . import common, messages

# Commands in the order --help lists them: (command name, module name under lakevec.cli).
COMMANDS = (
    ("tables", "tables_cmd"),
    ("describe", "describe_cmd"),
    ("versions", "versions_cmd"),
    ("ingest", "ingest_cmd"),
    ("index", "index_cmd"),
    ("search", "search_cmd"),
    ("join", "join_cmd"),
    ("dedup", "dedup_cmd"),
    ("optimize", "optimize_cmd"),
    ("stats", "stats_cmd"),
    ("cache", "cache_cmd"),
    ("compact", "compact_cmd"),
    ("vacuum", "vacuum_cmd"),
    ("pipeline", "pipeline_cmd"),
    ("bench", "bench_cmd"),
    ("quickstart", "quickstart_cmd"),
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
examples:
  lakevec quickstart                                  # demo on an embedded S3 server (SIFT10K)
  export LAKEVEC_LAKE=s3://my-bucket/lake             # or pass --lake to every command
  lakevec ingest docs 's3://my-bucket/emb/2024-06-01/*.parquet' --dim 384 --metric cosine
  lakevec index docs                                  # phases with counts on stderr
  lakevec search docs --query-file queries.npy -k 10 --output hits.parquet
  lakevec tables; lakevec describe docs; lakevec versions docs
  lakevec --json stats docs

exit codes: 0 ok, 1 lakevec error (message on stderr), 2 bad usage, 3 internal error, 130 interrupted
"""


def load_command_modules() -> list:
    """Import the command modules that exist; a module missing itself is skipped, any other error raised."""
    mods = []
    for _name, modname in COMMANDS:
        full = f"{__package__}.{modname}"
        try:
            mods.append(importlib.import_module(full))
        except ModuleNotFoundError as e:
            if e.name != full:  # the module exists but something it imports is missing: a real error
                raise
    return mods


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors raise instead of exiting, so main() can return the code."""

    def error(self, message):
        raise _UsageExit(self, message)


class _UsageExit(Exception):
    def __init__(self, parser, message):
        super().__init__(message)
        self.parser = parser


def build_parser(modules=None) -> argparse.ArgumentParser:
    """Return the top-level parser with one sub-parser per available command."""
    from .. import __version__

    parser = _Parser(prog="lakevec", description="lakevec: a vector data lake on object storage "
                     "(Lance tables, IVF partitions, NVMe cache, Spark/Ray batch jobs).",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lakevec {__version__}")
    common.add_output_options(parser, top_level=True)
    common.add_lake_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in (modules if modules is not None else load_command_modules()):
        before = set(sub.choices)
        mod.register(sub)
        for name in set(sub.choices) - before:  # every command accepts --json/--quiet/--debug after it too
            _add_output_options_everywhere(sub.choices[name])
    return parser


def _add_output_options_everywhere(p: argparse.ArgumentParser) -> None:
    """Add the output options to ``p`` and to its nested sub-commands (``cache warm``...)."""
    if not any("--json" in a.option_strings for a in p._actions):
        common.add_output_options(p)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _add_output_options_everywhere(child)


# -- output ----------------------------------------------------------------------------------------

def jsonable(obj):
    """Return ``obj`` made JSON-serialisable (numpy, Arrow scalars, dataclasses, paths, sets, NaN -> None)."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        try:
            return jsonable(obj.to_dict())
        except TypeError:
            pass
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return jsonable(obj.item())
        if isinstance(obj, np.ndarray):
            return jsonable(obj.tolist())
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "as_py"):  # pyarrow scalar
        return jsonable(obj.as_py())
    if isinstance(obj, (datetime.datetime, datetime.date)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.6g}"
    if isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list, tuple)) for x in v):
        return ", ".join(_fmt_value(x) for x in v) if v else "-"
    if v is None:
        return "-"
    return str(v)


def format_rows(rows: list[dict], max_width: int = 40) -> str:
    """Return a list of flat dicts as an aligned text table."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt_value(r.get(c))[:max_width] for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def format_generic(result, indent: int = 0) -> str:
    """Return a readable ``key: value`` rendering of a command's result dict."""
    pad = "  " * indent
    if not isinstance(result, dict):
        return pad + _fmt_value(result)
    lines = []
    width = max((len(str(k)) for k in result), default=0)
    for k, v in result.items():
        if isinstance(v, dict) and v:
            lines.append(f"{pad}{k}:")
            lines.append(format_generic(v, indent + 1))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            lines.append(f"{pad}{k}:")
            lines += [pad + "  " + line for line in format_rows(v).splitlines()]
        else:
            lines.append(f"{pad}{str(k) + ':':<{width + 1}} {_fmt_value(v)}")
    return "\n".join(lines)


def _formatter(args):
    func = getattr(args, "func", None)
    mod = sys.modules.get(getattr(func, "__module__", "") or "")
    return getattr(mod, "format_text", None) or format_generic


def _fail(args, code: int, kind: str, message: str, exc: BaseException | None = None) -> int:
    """Print the one error line (and the JSON error with --json); return ``code``."""
    if exc is not None and getattr(args, "debug", False):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    text = messages.for_cli(message)
    try:
        sys.stderr.flush()
        print(f"lakevec: error: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    if getattr(args, "json", False):
        try:
            print(json.dumps({"error": {"type": kind, "message": text, "exit_code": code}}), flush=True)
        except (OSError, ValueError):
            pass
    return code


def _usage_message(parser: argparse.ArgumentParser, message: str) -> str:
    """``index: the following arguments are required: table (see 'lakevec index --help')``."""
    cmd = parser.prog.split(" ", 1)[1] if " " in parser.prog else ""
    return f"{cmd + ': ' if cmd else ''}{message} (see '{parser.prog} --help')"


def _preparse_flags(argv: list[str]) -> argparse.Namespace:
    """Find --json/--debug/--quiet before full parsing, so parse errors honour them."""
    return argparse.Namespace(json="--json" in argv, debug="--debug" in argv, quiet="--quiet" in argv)


def main(argv: list[str] | None = None) -> int:
    """Run the ``lakevec`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _preparse_flags(argv)
    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
        except _UsageExit as e:
            return _fail(args, EXIT_USAGE, "UsageError", _usage_message(e.parser, str(e)))
        except SystemExit as e:  # --help / --version exit 0 through argparse
            return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        if not getattr(args, "func", None):
            names = ", ".join(sorted(parser._subparsers._group_actions[0].choices)) if parser._subparsers else ""
            return _fail(args, EXIT_USAGE, "UsageError", f"no command given; commands: {names} "
                                                          "(see 'lakevec --help')")
        result = args.func(args)
        if result is None:
            result = {}
        code = int(result.get("exit_code", 0) or 0) if isinstance(result, dict) else 0
        if args.json:
            print(json.dumps(jsonable(result), indent=2), flush=True)
        else:
            text = _formatter(args)(result)
            if text:
                print(text, flush=True)
        return code
    except KeyboardInterrupt as e:
        return _fail(args, EXIT_INTERRUPTED, "KeyboardInterrupt", "interrupted", e)
    except BrokenPipeError:  # `lakevec ... | head`: the reader went away; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - the one place that turns every error into an exit code
        from ..errors import LakevecError
        if isinstance(e, common.UsageError):
            return _fail(args, EXIT_USAGE, "UsageError", str(e), e)
        if isinstance(e, LakevecError):
            return _fail(args, EXIT_ERROR, type(e).__name__, str(e), e)
        hint = "" if getattr(args, "debug", False) else " (run with --debug for the traceback)"
        return _fail(args, EXIT_INTERNAL, type(e).__name__,
                     f"internal error: {type(e).__name__}: {messages.one_line(str(e))}{hint}", e)


if __name__ == "__main__":  # python -m lakevec.cli.main
    sys.exit(main())
