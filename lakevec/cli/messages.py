"""Error text as the command line shows it: one line, CLI spelling, no Rust source locations.

The library's messages are written for Python callers (``on_bad_rows='skip'``, ``storage_options={...}``)
and may carry text from Lance's Rust core (``..., /home/runner/work/lance/lance/rust/.../sql.rs:123:45``).
``for_cli`` rewrites such a message for a ``lakevec`` user:

    >>> for_cli("3 bad row(s) (use on_bad_rows='skip' or 'quarantine' to ingest the good rows)")
    "3 bad row(s) (use --on-bad-rows skip or quarantine to ingest the good rows)"
"""
from __future__ import annotations

import re

# Rust source locations that Lance and DataFusion append to their errors: ", /path/to/file.rs:12:5"
_RUST_LOCATION = re.compile(r",?\s*(?:at\s+)?(?:[A-Za-z]:)?[\w.~/\\-]*\.rs:\d+(?::\d+)?")
_QUOTED = r"""(?:'[^']*'|"[^"]*")"""

# library keywords that messages suggest as Python arguments (keyword='value') and the CLI spells as options;
# anything else (dim=16, SQL, column names) is a description and left alone
_KEYWORDS = ("on_bad_rows", "engine", "idempotency_key", "older_than", "id_column", "vector_column", "id_type")


def strip_rust_locations(text: str) -> str:
    """Remove ``, /…/file.rs:LINE:COL`` suffixes (Lance's Rust source paths) from ``text``."""
    return _RUST_LOCATION.sub("", text)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


def _storage_options(m: re.Match) -> str:
    body = m.group(1)
    pairs = re.findall(rf"({_QUOTED})\s*:\s*({_QUOTED}|\.\.\.|[^,}}]+)", body)
    if not pairs:
        return "--storage-option KEY=VALUE"
    return " ".join(f"--storage-option {_unquote(k)}={_unquote(v.strip())}" for k, v in pairs)


def python_to_cli(text: str) -> str:
    """Rewrite Python call syntax in a message into the options of the command line."""
    text = re.sub(r"storage_options\s*=\s*\{([^}]*)\}", _storage_options, text)
    text = re.sub(r"\bstorage_options\b", "--storage-option KEY=VALUE", text)
    # aws_use_default_chain='true' and other storage keys given alone
    text = re.sub(rf"\b(aws_[a-z_]+|allow_http)\s*=\s*({_QUOTED})", lambda m: f"--storage-option {m.group(1)}="
                  f"{_unquote(m.group(2))}", text)
    keys = "|".join(_KEYWORDS)
    # on_bad_rows='skip' or 'quarantine'  ->  --on-bad-rows skip or quarantine
    text = re.sub(rf"\b({keys})\s*=\s*({_QUOTED})((?:\s*(?:or|,)\s*{_QUOTED})*)",
                  lambda m: f"{_flag(m.group(1))} {_unquote(m.group(2))}"
                  + re.sub(_QUOTED, lambda q: _unquote(q.group(0)), m.group(3)), text)
    return text


def one_line(text: str) -> str:
    """Join the non-blank lines of ``text`` with ``; ``."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts) if parts else "(no message)"


def for_cli(text: str) -> str:
    """Return an error message as the command line prints it (see the module doc)."""
    return one_line(python_to_cli(strip_rust_locations(str(text))))
