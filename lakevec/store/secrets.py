"""Secrets in storage options never shown: masked reprs and a log filter.

* :class:`SecretDict` is a ``dict`` (Lance, pyarrow and pickle take it as one) whose ``repr``/``str``
  print ``'***'`` for secret values, so a task record, a traceback's locals, a debugger or a notebook
  showing the options shows no secret. ``Location.options`` and ``Location.lance_options()`` are
  SecretDicts. (A plain ``dict(opts)`` copy is a plain dict again: keep the SecretDict.)
* :func:`register_secrets` remembers secret values (every parsed S3 location registers its own), and
  every log record of a ``lakevec`` or ``lakevec.*`` logger has them replaced by ``***`` (message,
  arguments, traceback text) before any handler sees it. Two hooks, because a logger's filters are not
  inherited by its children and lakevec's loggers are created when their modules are first imported
  (some after ``connect``): a log-record factory wrapping the current one (every ``lakevec*`` record,
  whenever its logger was created), and :class:`SecretsFilter` on the ``lakevec`` logger and every
  ``lakevec.*`` logger existing at connect time (in case another library replaces the factory).

Secret keys: names containing ``secret``, ``token``, ``password`` or ``credential``, or ending in
``_key`` (``aws_secret_access_key``, ``aws_session_token``, ``azure_storage_account_key``,
``google_service_account_key``...). ``aws_access_key_id`` is an identifier, not a secret.
"""
from __future__ import annotations

import logging
import threading

MASK = "***"
_MARKERS = ("secret", "token", "password", "passwd", "credential")


def is_secret_key(key) -> bool:
    """Return True if the storage option ``key`` holds a secret."""
    k = str(key).lower()
    return any(m in k for m in _MARKERS) or k.endswith("_key")


def mask_options(options) -> dict:
    """Return a plain dict copy of ``options`` with secret values replaced by ``***``."""
    return {k: (MASK if is_secret_key(k) and v else v) for k, v in dict(options).items()}


class SecretDict(dict):
    """Storage options whose ``repr``/``str`` mask secret values; otherwise an ordinary dict."""

    def __repr__(self) -> str:
        return repr(mask_options(self))

    __str__ = __repr__

    def copy(self) -> "SecretDict":
        return SecretDict(self)

    def __reduce__(self):
        return (SecretDict, (dict(self),))


_SECRETS: tuple[str, ...] = ()  # longest first (one secret may contain another); replaced, never mutated
_LOCK = threading.Lock()
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words in log lines


def register_secrets(options) -> None:
    """Remember the secret values of ``options`` so that log lines never show them; install the filter."""
    new = {str(v) for k, v in (options or {}).items() if is_secret_key(k) and v and len(str(v)) >= MIN_SECRET_LEN}
    global _SECRETS
    with _LOCK:
        if not new <= set(_SECRETS):
            _SECRETS = tuple(sorted(new | set(_SECRETS), key=len, reverse=True))
    install_log_filter()


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``***``."""
    secrets = _SECRETS
    if not secrets or not text:
        return text
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


def _mask_record(record: logging.LogRecord) -> None:
    """Replace registered secret values in ``record`` (message with its arguments, traceback, stack)."""
    if not _SECRETS or getattr(record, "_lakevec_masked", False):
        return
    record._lakevec_masked = True
    _do_mask(record)


class SecretsFilter(logging.Filter):
    """Mask registered secret values in a log record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _mask_record(record)
        return True


def _do_mask(record: logging.LogRecord) -> None:
    try:
        msg = record.getMessage()
    except Exception:  # a broken format string: leave the record to logging's own error path
        return
    masked = redact(msg)
    if masked != msg:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


_FILTER = SecretsFilter()
_FACTORY_INSTALLED = False


def _install_record_factory() -> None:
    global _FACTORY_INSTALLED
    if _FACTORY_INSTALLED:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if record.name == "lakevec" or record.name.startswith("lakevec."):
            _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _FACTORY_INSTALLED = True


def install_log_filter() -> None:
    """Install the record factory (once) and the filter on the ``lakevec`` logger and every existing
    ``lakevec.*`` logger (idempotent; every connect installs again)."""
    with _LOCK:
        _install_record_factory()
    names = ["lakevec"] + [n for n in list(logging.root.manager.loggerDict) if n.startswith("lakevec.")]
    for name in names:
        lg = logging.getLogger(name)
        if _FILTER not in lg.filters:
            lg.addFilter(_FILTER)
