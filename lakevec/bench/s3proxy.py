"""A counting HTTP proxy in front of an S3 server: the server's view of the requests a client makes.

Used by the cache tests (do lakevec's own counters match what the server saw?) and by
``lakevec bench cache`` (GETs and bytes per query of every contender, counted the same way).

    with CountingProxy(srv.endpoint) as proxy:       # srv: lakevec.store.seaweed.EmbeddedS3
        opts = dict(srv.storage_options, aws_endpoint=proxy.endpoint)
        ...                                          # any S3 client pointed at proxy.endpoint
        proxy.counts()   # {"GET": n, "HEAD": n, "PUT": n, "LIST": n, "DELETE": n, "POST": n,
                         #  "bytes_out": n, "bytes_in": n, "requests": n}

Requests are forwarded verbatim, ``Host`` header included, so SigV4 signatures made for the proxy's
address verify at the server. A GET on a bucket (no key) or with ``list-type``/``delimiter``/``prefix``
in the query is a LIST. ``bytes_out`` counts response bodies sent to the client (the bytes a client
reads from the store); ``bytes_in`` request bodies (uploads). It is a test tool: one upstream connection
per client connection, bodies held in memory, loopback only.
"""
from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["CountingProxy"]

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
_LIST_KEYS = ("list-type", "delimiter", "prefix", "continuation-token", "max-keys", "marker")


def classify(method: str, path: str, query: str) -> str:
    """Return the request kind: GET, HEAD, PUT, LIST, DELETE or POST."""
    if method == "GET":
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        key = path.lstrip("/").split("/", 1)[1] if "/" in path.lstrip("/") else ""
        if not key or any(k in q for k in _LIST_KEYS):
            return "LIST"
    return method


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep client connections alive, as real S3 clients expect

    def log_message(self, *args):  # quiet
        pass

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self, "_conn", None)
        if conn is None:
            host, port = self.server.upstream
            conn = self._conn = http.client.HTTPConnection(host, port, timeout=120)
        return conn

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _forward(self) -> None:
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conn = None
                if attempt:
                    self.send_error(502, "upstream failed")
                    return
        path, _, query = self.path.partition("?")
        kind = classify(self.command, path, query)
        sent = 0 if self.command == "HEAD" else len(data)
        self.server.record(kind, self.command, self.path, resp.status, sent, len(body))
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.counter: Counter = Counter()
        self.log: list[tuple] = []
        self.keep_log = False

    def record(self, kind, method, path, status, sent, received):
        with self.lock:
            self.counter[kind] += 1
            self.counter["requests"] += 1
            self.counter["bytes_out"] += sent
            self.counter["bytes_in"] += received
            if self.keep_log:
                self.log.append((kind, method, path, status, sent))


class CountingProxy:
    """Forward HTTP requests to ``upstream`` (e.g. ``http://127.0.0.1:8333``) and count them by kind."""

    KINDS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")

    def __init__(self, upstream: str, keep_log: bool = False):
        u = urllib.parse.urlparse(upstream)
        self._upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self._keep_log = keep_log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The proxy's URL, to use as the S3 endpoint."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CountingProxy":
        self._server = _Server(self._upstream)
        self._server.keep_log = self._keep_log
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "CountingProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def counts(self) -> dict:
        """Return the counts since start (or the last ``reset``)."""
        with self._server.lock:
            c = dict(self._server.counter)
        out = {k: c.get(k, 0) for k in self.KINDS}
        out.update(requests=c.get("requests", 0), bytes_out=c.get("bytes_out", 0), bytes_in=c.get("bytes_in", 0))
        return out

    def log(self) -> list[tuple]:
        """Return the recorded requests (kind, method, path, status, bytes sent) when ``keep_log``."""
        with self._server.lock:
            return list(self._server.log)

    def reset(self) -> dict:
        """Return the counts and set them to zero."""
        with self._server.lock:
            c = dict(self._server.counter)
            self._server.counter.clear()
            self._server.log.clear()
        out = {k: c.get(k, 0) for k in self.KINDS}
        out.update(requests=c.get("requests", 0), bytes_out=c.get("bytes_out", 0), bytes_in=c.get("bytes_in", 0))
        return out
