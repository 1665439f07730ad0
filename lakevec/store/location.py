"""Lake URIs: parse and validate them, resolve credentials, derive Lance/pyarrow options.

A lake root is a local path (``/data/lake``, ``file:///data/lake``) or ``s3://bucket/prefix``.
Storage options use Lance's key names (``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``, ``aws_endpoint``, ``aws_region``, ``allow_http``); anything missing is taken
from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ALLOW_HTTP``). Set ``aws_use_default_chain: "true"`` to let the AWS SDK find credentials
itself (instance profiles, ~/.aws files).

Deadlines: ``store_timeout`` (seconds; default ``$LAKEVEC_STORE_TIMEOUT`` or 60) bounds every store
call (see ``store.deadline``); ``lance_options()`` carries the Lance timeouts derived from it, and the
key itself, so that a worker re-parsing those options honours the same deadline.

Secrets: ``options`` and ``lance_options()`` are ``SecretDict``s (masked repr), the repr of a Location
shows no secret, and secret values are registered with the ``lakevec`` log filter (``store.secrets``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from ..config import STORE_TIMEOUT_OPTION
from ..errors import CredentialsError, InvalidNameError
from .deadline import Deadline, resolve_store_timeout
from .secrets import SecretDict, register_secrets

_ENV = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "aws_endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "allow_http": ("AWS_ALLOW_HTTP",),
}
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Location:
    """A parsed lake root: scheme, bucket, key prefix or local path, and resolved options."""

    uri: str  # normalised, no trailing slash: "s3://bucket/prefix" or "/abs/path"
    scheme: str  # "s3" | "file"
    bucket: str = ""
    prefix: str = ""  # key prefix inside the bucket, no leading/trailing slash
    options: dict = field(default_factory=SecretDict)  # resolved Lance-style storage options (s3 only)

    @property
    def is_local(self) -> bool:
        """Return True for a local file system root."""
        return self.scheme == "file"

    def join(self, *parts: str) -> str:
        """Return the URI of ``parts`` below this root."""
        tail = "/".join(p.strip("/") for p in parts if p)
        return f"{self.uri}/{tail}" if tail else self.uri

    @property
    def store_timeout(self) -> float:
        """Seconds within which a store call fails once the store stops answering."""
        return resolve_store_timeout(self.options)

    @property
    def deadline(self) -> Deadline:
        """The per-client timeout settings derived from ``store_timeout``."""
        return Deadline(self.store_timeout)

    def child(self, *parts: str) -> "Location":
        """Return the Location of a sub-folder, sharing options."""
        uri = self.join(*parts)
        prefix = "/".join(x for x in [self.prefix, *[p.strip("/") for p in parts]] if x)
        return Location(uri, self.scheme, self.bucket, prefix, self.options)

    def fs_path(self, uri: str) -> str:
        """Return the pyarrow file-system path of ``uri`` (bucket/key for S3, absolute path locally)."""
        if self.scheme == "s3":
            return uri[len("s3://"):]
        return uri

    def lance_options(self) -> dict | None:
        """Return the storage_options to pass to Lance (None for local paths)."""
        if self.scheme != "s3":
            return None
        opts = SecretDict((k, v) for k, v in self.options.items() if k != "aws_use_default_chain")
        for k, v in self.deadline.lance_options().items():
            opts.setdefault(k, v)
        return opts

    def __repr__(self) -> str:
        extra = f", options={self.options!r}" if self.options else ""
        return f"Location({self.uri!r}{extra})"


def parse_location(uri, storage_options: dict | None = None) -> Location:
    """Parse and validate a lake root URI, resolving S3 credentials from options and environment."""
    if not isinstance(uri, (str, os.PathLike)):
        raise InvalidNameError(f"lake URI must be a string or path, got {type(uri).__name__}")
    uri = os.fspath(uri).strip()
    if not uri:
        raise InvalidNameError("lake URI is empty")
    if storage_options is not None and not isinstance(storage_options, dict):
        raise InvalidNameError(f"storage_options must be a dict, got {type(storage_options).__name__}")
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        # split by hand: '?' and '#' are legal in object keys (and in globs), not a query or fragment
        bucket, _, path = uri.split("://", 1)[1].partition("/")
        if not _BUCKET_RE.match(bucket or ""):
            raise InvalidNameError(f"invalid S3 bucket name {bucket!r} in lake URI {uri!r}")
        prefix = path.strip("/")
        if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
            raise InvalidNameError(f"lake URI {uri!r} has an empty, '.' or '..' path segment")
        opts = SecretDict(_resolve_s3_options(storage_options or {}, uri))
        register_secrets(opts)
        norm = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return Location(norm, "s3", bucket, prefix, opts)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = parsed.path if parsed.scheme == "file" else uri
        path = os.path.abspath(os.path.expanduser(path))
        return Location(path.rstrip("/") or "/", "file", "", "", SecretDict())
    raise InvalidNameError(
        f"unsupported lake URI scheme {parsed.scheme!r} in {uri!r}: use a local path or s3://bucket/prefix"
    )


def _resolve_s3_options(given: dict, uri: str) -> dict:
    """Merge storage options with AWS environment variables; fail early if there are no credentials."""
    opts = {str(k).lower(): str(v) for k, v in given.items()}
    for key, env_names in _ENV.items():
        if key not in opts:
            for name in env_names:
                if os.environ.get(name):
                    opts[key] = os.environ[name]
                    break
    opts.setdefault("aws_region", "us-east-1")
    # resolved now (environment included) and kept in the options, so workers get the same deadline
    opts[STORE_TIMEOUT_OPTION] = f"{resolve_store_timeout(opts):g}"
    endpoint = opts.get("aws_endpoint", "")
    if endpoint.startswith("http://"):
        opts.setdefault("allow_http", "true")
    default_chain = opts.get("aws_use_default_chain", "").lower() == "true"
    has_keys = bool(opts.get("aws_access_key_id")) and bool(opts.get("aws_secret_access_key"))
    if not has_keys and not default_chain:
        partial = "aws_access_key_id" if not opts.get("aws_access_key_id") else "aws_secret_access_key"
        raise CredentialsError(
            f"no S3 credentials for {uri}: {partial} is missing; pass storage_options="
            "{'aws_access_key_id': ..., 'aws_secret_access_key': ...} or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or aws_use_default_chain='true' for instance profiles)"
        )
    return opts
