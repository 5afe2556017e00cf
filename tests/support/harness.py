"""Driving whole processes: the storage stand-ins and compute_ctl, as an operator would.

compute_ctl refuses to run as root, so when the tests run as root it is started as the
unprivileged `postgres` user, and every path it needs lives in a directory that user owns.
Waiting is always on a real condition (a status, an exit) with a deadline, never a bare sleep.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from compute_dev.pgbin import RunAs, find_pg_bin, server_user
from tests.support.waiting import DEADLINE, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shared_tempdir(prefix: str) -> Path:
    """A directory the server user can use (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    server_user().chown(path)
    path.chmod(0o755)
    return path


@dataclass
class Storage:
    """A running `compute-dev storage` process and what it announced."""

    process: subprocess.Popen[str]
    root: Path
    libpq_url: str
    grpc_url: str
    safekeepers: list[str]
    tenant_id: str
    timeline_id: str
    lsn: str


def start_storage(root: Path, *extra: str) -> Storage:
    """`compute-dev timeline create` then `compute-dev storage` (with `extra` flags, e.g.
    faults) on free ports."""
    created = subprocess.run(
        [sys.executable, "-m", "compute_dev.cli", "timeline", "create", "--dir", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    timeline = json.loads(created.stdout)
    argv = [sys.executable, "-m", "compute_dev.cli", "storage", "--dir", str(root)]
    argv += ["--libpq-port", "0", "--grpc-port", "0", "--safekeeper-ports", "0,0,0", *extra]
    with open(root / "storage.log", "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    process.stdout.close()
    return Storage(
        process=process,
        root=root,
        libpq_url=ready["pageserver_libpq_url"],
        grpc_url=ready["pageserver_grpc_url"],
        safekeepers=ready["safekeeper_connstrings"],
        tenant_id=timeline["tenant_id"],
        timeline_id=timeline["timeline_id"],
        lsn=timeline["lsn"],
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = DEADLINE,
) -> HttpAnswer:
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(), dict(exc.headers))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """An Ed25519 key pair as neon_local makes one: its JWK (kid = base64url SHA-256 of the
    public key) goes in `compute_ctl_config.jwks`, tokens are signed with the private half."""

    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def kid(self) -> str:
        return b64url(hashlib.sha256(self.public_raw).digest())

    def jwk(self) -> dict[str, Any]:
        return {
            "use": "sig",
            "key_ops": ["verify"],
            "alg": "EdDSA",
            "kid": self.kid,
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.public_raw),
        }

    def token(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers=headers)

    def compute_token(self, compute_id: str) -> str:
        """What neon_local sends for ordinary calls."""
        return self.token({"compute_id": compute_id, "scope": None, "aud": None})

    def admin_token(self) -> str:
        """What neon_local sends for /terminate."""
        return self.token({"compute_id": None, "scope": "compute_ctl:admin", "aud": ["compute"]})


def ctl_config(*keys: SigningKey) -> dict[str, Any]:
    return {"jwks": {"keys": [key.jwk() for key in keys]}}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


@dataclass
class ControlPlane:
    """A running `compute-dev control-plane` serving `spec_dir/{id}.json`."""

    process: subprocess.Popen[str]
    spec_dir: Path
    url: str

    def put(self, compute_id: str, document: Any) -> None:
        """What the stand-in answers for `compute_id` from now on (a document, or a status)."""
        status = self.spec_dir / f"{compute_id}.status"
        if isinstance(document, int):
            status.write_text(str(document))
            return
        status.unlink(missing_ok=True)
        target = self.spec_dir / f"{compute_id}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(document))
        tmp.replace(target)  # never a half-written file


CONTROL_PLANE_TOKEN = "cp-token"


def start_control_plane(spec_dir: Path, token: str | None = None) -> ControlPlane:
    argv = [sys.executable, "-m", "compute_dev.cli", "control-plane", "--port", "0"]
    argv += ["--spec-dir", str(spec_dir)]
    if token is not None:
        argv += ["--token", token]
    with open(spec_dir.parent / f"{spec_dir.name}.log", "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    process.stdout.close()
    return ControlPlane(process=process, spec_dir=spec_dir, url=ready["control_plane_url"])


@dataclass
class Compute:
    """One compute_ctl process started from a spec (or empty)."""

    workdir: Path
    pg_port: int
    http_port: int
    internal_port: int
    process: subprocess.Popen[bytes] | None = None
    run_as: RunAs = field(default_factory=server_user)
    pg_bin: Path = field(default_factory=find_pg_bin)
    token: str | None = None  # sent by `status()` and `call()`
    pgdata_path: Path | None = None  # elsewhere than workdir/pgdata (e.g. a pre-made mount)

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    def call(self, method: str, path: str, body: Any = None) -> HttpAnswer:
        """A request to the external API with this compute's token."""
        return http(method, f"{self.url}{path}", body, headers=bearer(self.token))

    @property
    def pgdata(self) -> Path:
        return self.pgdata_path or self.workdir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.workdir / "compute.log"

    @property
    def connstr(self) -> str:
        return f"postgresql://cloud_admin@127.0.0.1:{self.pg_port}/postgres"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def settings(self) -> list[dict[str, str]]:
        """What every test spec needs so Postgres listens where the test looks."""
        return [
            {"name": "port", "value": str(self.pg_port), "vartype": "integer"},
            {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
            {"name": "unix_socket_directories", "value": str(self.workdir), "vartype": "string"},
        ]

    def write(self, name: str, document: Any) -> Path:
        path = self.workdir / name
        path.write_text(json.dumps(document))
        self.run_as.chown(path)
        return path

    def start(self, *args: str, env: dict[str, str] | None = None, wait: bool = True) -> None:
        """Start compute_ctl with `args`; unless `wait` is false, until its API answers."""
        argv = [
            sys.executable,
            "-m",
            "compute_ctl.cli",
            "-D",
            str(self.pgdata),
            "-C",
            self.connstr,
            "-b",
            str(self.pg_bin / "postgres"),
            "--external-http-port",
            str(self.http_port),
            "--internal-http-port",
            str(self.internal_port),
            "--dev",
            *args,
        ]
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self.run_as.preexec(),  # noqa: PLW1509 - drops to the server user
                env=self.run_as.env({**os.environ, **(env or {})}),
                cwd=self.workdir,
            )
        if wait:
            wait_until("the HTTP API", self._http_up)

    def _http_up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"compute_ctl exited early:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict[str, Any]:
        answer = self.call("GET", "/status")
        assert answer.status == 200, answer
        result: dict[str, Any] = answer.json()
        return result

    def wait_status(self, *wanted: str, timeout: float = DEADLINE) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal seen
            seen = self.status()
            return seen["status"] in wanted

        try:
            wait_until(f"status in {wanted}", reached, timeout)
        except AssertionError:
            raise AssertionError(f"status {seen}, wanted {wanted}\n{self.log()}") from None
        return seen

    def metric(self, name: str) -> float | None:
        """One sample's value from /metrics (`name` includes its labels), None if absent."""
        text = http("GET", f"{self.url}/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_lfc(self, path: str, *final: str, timeout: float = DEADLINE) -> dict[str, Any]:
        """Poll `GET /lfc/prewarm` or `/lfc/offload` until its status is one of `final`."""
        seen: dict[str, Any] = {}

        def ended() -> bool:
            nonlocal seen
            answer = self.call("GET", path)
            assert answer.status == 200, answer
            seen = answer.json()
            return seen["status"] in final

        try:
            wait_until(f"{path} in {final}", ended, timeout)
        except AssertionError:
            raise AssertionError(f"{path}: {seen}, wanted {final}\n{self.log()}") from None
        return seen

    def sql(self, query: str) -> Any:
        with psycopg.connect(self.connstr, connect_timeout=10, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
            return row[0] if row else None

    def execute(self, statement: str, dbname: str | None = None) -> None:
        """Run a statement that returns no rows, as cloud_admin (in `dbname` if given)."""
        conninfo = psycopg.conninfo.make_conninfo(self.connstr, dbname=dbname or "postgres")
        with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
            conn.execute(statement.encode())  # test-controlled text

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"compute_ctl did not exit\n{self.log()}") from None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def children_of(pid: int) -> dict[int, str]:
    """`pid`'s children that are still running (not zombies): pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie whose new parent does not reap it is dead too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
