"""The pipeline file: a TOML list of steps, validated before anything runs.

    name = "nightly-docs"                       # names the run's idempotency keys and reports
    lake = "s3://my-bucket/lake"                # or $LAKEVEC_LAKE
    [storage_options]                           # optional (else the AWS_* environment)
    aws_region = "eu-west-1"

    [[step]]
    kind = "ingest"                             # new files of the landing folders, exactly once
    table = "docs"
    sources = ["s3://landing/docs/"]            # folders / globs / files (Parquet)
    create = { dim = 384, metric = "cosine" }   # create the table when it does not exist yet
    on_bad_rows = "quarantine"                  # raise | skip | quarantine (default raise)
    engine = "local"                            # local | ray | spark

    [[step]]
    kind = "compact"                            # merge small fragments within partitions
    table = "docs"

    [[step]]
    kind = "optimize"                           # keep the index healthy (no-op when it is)
    table = "docs"

    [[step]]
    kind = "dedup"                              # duplicate groups of the table's current version
    table = "docs"
    threshold = 0.05
    output = "s3://my-bucket/exports/docs-dupes/v{version}"

    [[step]]
    kind = "join"                               # k nearest rows of `table` for every row of `left`
    left = "s3://landing/queries/"              # a Parquet folder, or left_table = "queries"
    table = "docs"
    k = 10
    output = "s3://my-bucket/exports/matches/v{version}"

    [[step]]
    kind = "export"                             # the table (or some columns) as Parquet
    table = "docs"
    columns = ["id", "gloss"]
    output = "s3://my-bucket/exports/docs/v{version}"

``output`` templates may use ``{version}`` (the table version the step reads), ``{table}`` and
``{pipeline}``; without ``{version}``, ``/v{version}`` is appended (an output folder holds one result).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import InvalidArgumentError

KINDS = ("ingest", "compact", "optimize", "dedup", "join", "export")
_COMMON = {"kind", "name", "table"}
_ALLOWED = {
    "ingest": _COMMON | {"sources", "create", "on_bad_rows", "engine", "id_column", "vector_column",
                         "idempotency_key"},
    "compact": _COMMON | {"target_rows", "engine"},
    "optimize": _COMMON | {"retrain", "engine"},
    "dedup": _COMMON | {"threshold", "k", "nprobe", "output", "columns", "engine"},
    "join": _COMMON | {"left", "left_table", "k", "radius", "nprobe", "output", "columns", "engine",
                       "right_filter", "left_filter"},
    "export": _COMMON | {"output", "columns", "filter"},
}
_REQUIRED = {"ingest": ("sources",), "dedup": ("threshold", "output"), "join": ("output",), "export": ("output",)}


@dataclass
class Step:
    """One step of a pipeline (``params``: the step's keys besides kind/name/table)."""

    kind: str
    name: str
    table: str
    params: dict = field(default_factory=dict)

    def get(self, key, default=None):
        return self.params.get(key, default)


@dataclass
class Pipeline:
    name: str
    lake: str
    storage_options: dict | None
    steps: list
    source: str = ""

    def select(self, only) -> list:
        """The steps named in ``only`` (names or kinds), in pipeline order; all when ``only`` is empty."""
        if not only:
            return list(self.steps)
        want = set(only)
        unknown = want - {s.name for s in self.steps} - {s.kind for s in self.steps}
        if unknown:
            raise InvalidArgumentError(f"--only: no step named {sorted(unknown)} in {self.source} (steps: "
                                       f"{', '.join(s.name for s in self.steps)})")
        return [s for s in self.steps if s.name in want or s.kind in want]


def load(path) -> Pipeline:
    """Read and validate a pipeline file; raise InvalidArgumentError naming the file, step and key."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgumentError(f"pipeline file {path} not found") from None
    except OSError as e:
        raise InvalidArgumentError(f"pipeline file {path} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(f"pipeline file {path} is not valid TOML: {e}") from None
    return parse(doc, path)


def parse(doc: dict, where: str = "pipeline") -> Pipeline:
    unknown = set(doc) - {"name", "lake", "storage_options", "step"}
    if unknown:
        raise InvalidArgumentError(f"{where}: unknown top-level key(s) {sorted(unknown)} (expected name, lake, "
                                   "storage_options, [[step]])")
    name = doc.get("name") or os.path.splitext(os.path.basename(where))[0]
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidArgumentError(f"{where}: name {name!r} must be letters, digits, '-' or '_'")
    lake = doc.get("lake") or os.environ.get("LAKEVEC_LAKE")
    if not lake:
        raise InvalidArgumentError(f"{where}: no lake: set lake = \"s3://bucket/lake\" (or $LAKEVEC_LAKE)")
    opts = doc.get("storage_options")
    if opts is not None and not isinstance(opts, dict):
        raise InvalidArgumentError(f"{where}: [storage_options] must be a table of strings")
    raw = doc.get("step") or []
    if not isinstance(raw, list) or not raw:
        raise InvalidArgumentError(f"{where}: no steps: add [[step]] tables (kinds: {', '.join(KINDS)})")
    steps, names = [], set()
    for i, s in enumerate(raw, 1):
        at = f"{where}, step {i}"
        if not isinstance(s, dict):
            raise InvalidArgumentError(f"{at}: must be a table")
        kind = s.get("kind")
        if kind not in KINDS:
            raise InvalidArgumentError(f"{at}: kind {kind!r} is not one of {', '.join(KINDS)}")
        sname = s.get("name") or kind
        if sname in names:
            raise InvalidArgumentError(f"{at}: two steps are named {sname!r}; give one a name = \"...\"")
        names.add(sname)
        at = f"{where}, step {sname!r}"
        bad = set(s) - _ALLOWED[kind]
        if bad:
            raise InvalidArgumentError(f"{at}: unknown key(s) {sorted(bad)} for a {kind} step (allowed: "
                                       f"{', '.join(sorted(_ALLOWED[kind] - {'kind', 'name'}))})")
        if not isinstance(s.get("table"), str) or not s["table"]:
            raise InvalidArgumentError(f"{at}: table = \"...\" is required")
        for key in _REQUIRED.get(kind, ()):
            if key not in s:
                raise InvalidArgumentError(f"{at}: {key} is required for a {kind} step")
        if kind == "join" and ("left" in s) == ("left_table" in s):
            raise InvalidArgumentError(f"{at}: give exactly one of left (Parquet) or left_table")
        if kind == "ingest" and isinstance(s.get("sources"), str):
            s = {**s, "sources": [s["sources"]]}
        params = {k: v for k, v in s.items() if k not in _COMMON}
        steps.append(Step(kind, sname, s["table"], params))
    return Pipeline(name, lake, dict(opts) if opts else None, steps, where)


def output_uri(template: str, table: str, version: int, pipeline: str) -> str:
    """Expand an output template (``{version}``, ``{table}``, ``{pipeline}``); append ``/v{version}`` when the
    template has no ``{version}``: an output folder holds one result, so each table version gets its own."""
    t = template.rstrip("/")
    if "{version}" not in t:
        t += "/v{version}"
    try:
        return t.format(version=version, table=table, pipeline=pipeline)
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidArgumentError(f"output template {template!r}: {e} (placeholders: {{version}}, {{table}}, "
                                   "{pipeline})") from None
