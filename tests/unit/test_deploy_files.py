"""The deployment files: the install script both `make` and the image use, the image's
entrypoint, the systemd unit, the Kubernetes example and the readiness probe.

Docker cannot run here, so the Dockerfile is checked as text; the entrypoint, the probe and the
unit's command line are run for real (against a stand-in `compute_ctl` or a stand-in HTTP API)
and what they produce is handed to compute_ctl's own argument parser.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from compute_ctl import __version__
from compute_ctl.cli import parse_params
from compute_ctl.compute.node import STOP_TIMEOUT
from compute_ctl.http.app import EXTERNAL_ROUTES
from compute_ctl.logs_export import rsyslog
from compute_ctl.params import Params
from compute_ctl.sidecars import SidecarLocations
from compute_ctl.spec.load import load_compute_config
from compute_ctl.spec.resolve import resolve
from compute_ctl.state import ComputeStatus
from tests.support.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
INSTALL = PROJECT_ROOT / "scripts" / "install.sh"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
UNIT = DEPLOY / "compute_ctl.service"
ENV_EXAMPLE = DEPLOY / "compute_ctl.env.example"
MANIFEST = DEPLOY / "kubernetes" / "compute.yaml"
PROBE = DEPLOY / "compute_ctl_probe.py"
DEPLOYING = PROJECT_ROOT / "docs" / "deploying.md"
HEALTHCHECK = DEPLOY / "healthcheck.sh"
IMAGE_SCRIPT = PROJECT_ROOT / "scripts" / "image.sh"
SHELL_SCRIPTS = [INSTALL, ENTRYPOINT, HEALTHCHECK, IMAGE_SCRIPT]
TIMEOUT = 60


def need_tool(name: str) -> str:
    """The path of a tool the tests need; `scripts/install.sh test-tools` installs them."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run scripts/install.sh test-tools")
    return path


# ------------------------------------------------------------------------------------------------
# One install script


def test_make_and_the_image_install_with_the_same_script() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"scripts/install\.sh venv \$\(VENV\) --dev", makefile)
    assert re.search(r"scripts/install\.sh postgres", makefile)
    assert re.search(r"scripts/install\.sh system", dockerfile)
    # The image's entrypoint and the unit's ExecStart are what the script installs.
    install = INSTALL.read_text()
    assert "BINDIR=/usr/local/bin" in install
    for installed in ('"$BINDIR/compute_ctl"', '"$BINDIR/docker-entrypoint.sh"'):
        assert installed in install
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in dockerfile


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shell_scripts_are_strict_and_lint_clean(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [need_tool("shellcheck"), str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout


def test_install_script_refuses_an_unknown_step() -> None:
    result = subprocess.run(
        ["bash", str(INSTALL), "nonsense"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "scripts/install.sh system" in result.stderr


# ------------------------------------------------------------------------------------------------
# The image and its entrypoint


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[tuple[str, str]] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def documented_variables(text: str, pattern: str) -> dict[str, str]:
    """NAME → flag from the lines of a documentation table."""
    return {m.group(1): m.group(2) for m in re.finditer(pattern, text, re.MULTILINE)}


DOCKERFILE_TABLE = r"^#\s+([A-Z_]+)\s+(--[a-z-]+)\s*$"
ENTRYPOINT_TABLE = r"^#\s+([A-Z_]+)\s+(--[a-z-]+)\b"
MARKDOWN_TABLE = r"^\| `([A-Z_]+)` \| `(--[a-z-]+)` \|"


def test_the_image() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM"
    assert instructions[0][1].startswith("debian:")
    assert ("USER", "postgres") in instructions
    exposed = {port for word, rest in instructions if word == "EXPOSE" for port in rest.split()}
    assert exposed == {"3080", "3081", "55432"}
    text = DOCKERFILE.read_text()
    for port in exposed:
        assert re.search(rf"^#\s+{port}\s+\S", text, re.MULTILINE), f"port {port} undocumented"
    env = dockerfile_env()
    assert env["EXTERNAL_HTTP_PORT"] == "3080"
    assert env["INTERNAL_HTTP_PORT"] == "3081"
    assert ":55432/" in env["CONNSTR"]


def test_the_image_is_layered_and_labelled() -> None:
    instructions = dockerfile_instructions()
    copies = [rest for word, rest in instructions if word == "COPY"]
    # Dependencies from the lock file before the source: a source edit reuses their layer.
    assert copies[-1].startswith(". ")
    assert any(rest.startswith("requirements.lock ") for rest in copies[:-1])
    assert "requirements.lock" not in (PROJECT_ROOT / ".dockerignore").read_text().split()
    labels = " ".join(rest for word, rest in instructions if word == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    health = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert len(health) == 1 and health[0].endswith('CMD ["compute-ctl-healthcheck"]')
    # The CA bundle comes in as a build secret, never as a file of the image.
    runs = [rest for word, rest in instructions if word == "RUN"]
    assert all("PIP_CERT=/run/secrets/pip-ca" in rest for rest in runs if "install.sh deps" in rest)
    assert not [rest for rest in copies if "cert" in rest.lower()]


class StatusServer:
    """Answers GET /readyz with a chosen status code, like compute_ctl's route."""

    def __init__(self) -> None:
        self.code = 503
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(server.code if self.path == "/readyz" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_healthcheck_is_healthy_only_on_200() -> None:
    server = StatusServer()
    try:
        env = {"PATH": "/usr/bin:/bin", "EXTERNAL_HTTP_PORT": str(server.port)}
        for code, healthy in ((200, True), (503, False)):
            server.code = code
            result = subprocess.run(
                [str(HEALTHCHECK)], env=env, capture_output=True, check=False, timeout=TIMEOUT
            )
            assert (result.returncode == 0) == healthy, code
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    # Nothing listening: unhealthy, at once.
    result = subprocess.run(
        [str(HEALTHCHECK)], env=env, capture_output=True, check=False, timeout=TIMEOUT
    )
    assert result.returncode != 0


def test_every_documented_variable_is_in_every_table() -> None:
    dockerfile = documented_variables(DOCKERFILE.read_text(), DOCKERFILE_TABLE)
    entrypoint = documented_variables(ENTRYPOINT.read_text(), ENTRYPOINT_TABLE)
    docs = documented_variables(DEPLOYING.read_text(), MARKDOWN_TABLE)
    assert len(dockerfile) >= 10
    assert dockerfile == entrypoint == docs


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    """A directory with a `compute_ctl` that writes its arguments, NUL-separated, to a file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "compute_ctl"
    stub.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$ARGS_OUT"\n')
    stub.chmod(0o755)
    return bindir


def run_entrypoint(
    stub_bin: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    out = stub_bin.parent / "args"
    out.unlink(missing_ok=True)
    full_env = {"PATH": f"{stub_bin}:/usr/bin:/bin", "ARGS_OUT": str(out), **env}
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def entrypoint_argv(stub_bin: Path, env: dict[str, str], *args: str) -> list[str]:
    result = run_entrypoint(stub_bin, env, *args)
    assert result.returncode == 0, result.stderr
    raw = (stub_bin.parent / "args").read_text()
    return raw.split("\0")[:-1]


def newest_postgres() -> str | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0),
    )
    return str(found[-1]) if found else None


def test_entrypoint_maps_each_documented_variable(stub_bin: Path) -> None:
    for name, flag in documented_variables(DOCKERFILE.read_text(), DOCKERFILE_TABLE).items():
        value = "4242" if name.endswith("_PORT") else f"value-of-{name.lower()}"
        env = {"PGBIN": "/pg/bin/postgres", name: value}  # PGBIN: or the installed one is found
        argv = entrypoint_argv(stub_bin, env)
        pairs = {(argv[i], argv[i + 1]) for i in range(0, len(argv), 2)}
        assert len(argv) == 2 * len(pairs)
        assert pairs == {("--pgbin", env["PGBIN"]), (flag, value)}, name


def test_entrypoint_with_the_image_defaults_and_a_spec(stub_bin: Path) -> None:
    env = {**dockerfile_env(), "SPEC_PATH": "/etc/compute_ctl/spec.json"}
    params = parse_params(entrypoint_argv(stub_bin, env))
    assert params.pgdata == Path("/var/db/postgres/compute")
    assert params.connstr == "postgresql://cloud_admin@localhost:55432/postgres"
    assert params.spec_path == Path("/etc/compute_ctl/spec.json")
    assert (params.external_http_port, params.internal_http_port) == (3080, 3081)
    newest = newest_postgres()
    if newest is not None:
        assert params.pgbin == newest


def test_entrypoint_with_a_mounted_config(stub_bin: Path) -> None:
    env = {**dockerfile_env(), "CONFIG_PATH": "/config/config.json", "COMPUTE_ID": "compute-1"}
    params = parse_params(entrypoint_argv(stub_bin, env))
    assert params.config_path == Path("/config/config.json")
    assert params.compute_id == "compute-1"
    argv = entrypoint_argv(stub_bin, dockerfile_env(), "-c", "/config/c.json", "-i", "c2")
    params = parse_params(argv)
    assert (params.config_path, params.compute_id) == (Path("/config/c.json"), "c2")


def test_entrypoint_with_a_control_plane_from_arguments(stub_bin: Path) -> None:
    argv = entrypoint_argv(stub_bin, dockerfile_env(), "-p", "http://cp:9090", "-i", "compute-1")
    params = parse_params(argv)
    assert params.control_plane_uri == "http://cp:9090"
    assert params.compute_id == "compute-1"


def test_entrypoint_arguments_come_last_and_empty_variables_add_nothing(stub_bin: Path) -> None:
    env = {
        **dockerfile_env(),
        "SPEC_PATH": "s.json",
        "CONFIG_PATH": "",
        "COMPUTE_CTL_ARGS": "--dev  --privileged-role-name=my_role",
    }
    argv = entrypoint_argv(stub_bin, env, "-D", "/elsewhere")
    assert "--config" not in argv
    assert argv[-2:] == ["-D", "/elsewhere"]
    params = parse_params(argv)
    assert params.pgdata == Path("/elsewhere")
    assert params.dev
    assert params.privileged_role_name == "my_role"


def test_entrypoint_runs_a_command_instead(stub_bin: Path) -> None:
    result = run_entrypoint(stub_bin, {}, "sh", "-c", "echo other command")
    assert (result.returncode, result.stdout) == (0, "other command\n")
    assert not (stub_bin.parent / "args").exists()


# ------------------------------------------------------------------------------------------------
# systemd


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key, value))
    return sections


def unit_service() -> list[tuple[str, str]]:
    return unit_sections(UNIT.read_text())["Service"]


def unit_value(key: str) -> str | None:
    values = [value for k, value in unit_service() if k == key]
    return values[-1] if values else None


def env_file(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            env[name.strip()] = value.strip()
    return env


def systemd_command(command: str, env: dict[str, str]) -> list[str]:
    """ExecStart as systemd expands it: `${VAR}` in place, a lone `$VAR` word split on
    whitespace (no word at all when empty)."""
    argv: list[str] = []
    for word in shlex.split(command):
        lone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if lone:
            argv += env.get(lone.group(1), "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def unit_environment(env_text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in unit_service():
        if key == "Environment":
            name, _, setting = value.partition("=")
            env[name] = setting
    return {**env, **env_file(env_text)}


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = need_tool("systemd-analyze")
    exec_start = unit_value("ExecStart")
    assert exec_start is not None
    binary = Path(shlex.split(exec_start)[0])
    # An alternative root with the system's units and the program the unit starts, so that
    # `verify` checks our unit without compute_ctl being installed on this machine.
    root = tmp_path / "root"
    for units in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if units.is_dir():
            shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
            break
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    stub = root / binary.relative_to("/")
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    result = subprocess.run(
        [tool, f"--root={root}", "verify", UNIT.name],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_stops_fast_through_compute_ctl_and_never_restarts() -> None:
    assert unit_value("User") == "postgres"
    assert unit_value("KillSignal") in ("SIGTERM", "SIGINT")
    # SIGTERM to compute_ctl only; SIGKILL for the cgroup only after the timeout.
    assert unit_value("KillMode") == "mixed"
    timeout = unit_value("TimeoutStopSec")
    assert timeout is not None and timeout.isdigit()
    assert STOP_TIMEOUT < int(timeout) <= STOP_TIMEOUT + 30
    assert unit_value("Restart") in (None, "no")
    assert unit_value("ExecStart") is not None
    assert unit_sections(UNIT.read_text())["Install"] == [("WantedBy", "multi-user.target")]


def exec_start_params(env_text: str) -> Params:
    exec_start = unit_value("ExecStart")
    assert exec_start is not None
    argv = systemd_command(exec_start, unit_environment(env_text))
    assert argv[0] == "/usr/local/bin/compute_ctl"
    return parse_params(argv[1:])


def test_unit_command_line_with_the_example_environment() -> None:
    example = ENV_EXAMPLE.read_text()
    params = exec_start_params(example)
    env = env_file(example)
    assert params.pgdata == Path(env["PGDATA"])
    assert params.connstr == env["CONNSTR"]
    assert params.pgbin == env["PGBIN"]
    assert params.spec_path == Path("/etc/compute_ctl/spec.json")
    # The alternatives the example offers in comments work as well.
    alternatives = re.findall(r"^# (COMPUTE_CTL_ARGS=.*)$", example, re.MULTILINE)
    assert len(alternatives) == 2
    sources = [exec_start_params(f"{example}\n{line}\n") for line in alternatives]
    assert sources[0].config_path == Path("/etc/compute_ctl/config.json")
    assert sources[1].control_plane_uri == "http://control-plane:9090"
    assert {p.compute_id for p in sources} == {"compute-1"}


def test_unit_notifies_and_its_hardening_leaves_the_default_paths_writable() -> None:
    assert unit_value("Type") == "notify"
    assert unit_value("NotifyAccess") == "main"
    assert unit_value("ProtectSystem") == "full"  # /usr, /boot, /efi and /etc read-only
    writable = [Path(p.lstrip("-")) for p in (unit_value("ReadWritePaths") or "").split()]
    locations = SidecarLocations.from_environ({}, vm=False)
    vm = SidecarLocations.from_environ({}, vm=True)
    defaults = [
        rsyslog.DEFAULT_DIR,
        locations.local_proxy_dir,
        locations.pgbouncer_ini,
        vm.pgbouncer_ini,
        locations.pgbouncer_pid_file,
    ]
    for path in defaults:
        protected = path.parts[1] in ("usr", "boot", "efi", "etc")
        if protected:
            assert any(path.is_relative_to(w) for w in writable), path
        if path.is_relative_to("/tmp"):
            # pgbouncer writes it in the host's /tmp: a private /tmp would hide it.
            assert unit_value("PrivateTmp") in (None, "no", "false"), path


def test_unit_command_line_with_defaults_only() -> None:
    params = exec_start_params("")
    assert params.pgdata == Path("/var/lib/compute_ctl/pgdata")
    assert unit_value("StateDirectory") == "compute_ctl"  # /var/lib/compute_ctl, owned by User=
    assert params.spec_path is not None


# ------------------------------------------------------------------------------------------------
# The readiness probe, against a stand-in for compute_ctl's external API


class FakeApi:
    """Answers /status and /metrics like compute_ctl does, for a chosen status."""

    def __init__(self) -> None:
        self.status = "empty"
        self.token: str | None = None  # when set, /status wants this bearer token
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append(self.path)
                if self.path == "/status":
                    wanted = f"Bearer {api.token}"
                    if api.token is not None and self.headers.get("Authorization") != wanted:
                        self.answer(401, {"error": "failed to verify authorization token"})
                    else:
                        self.answer(200, {"status": api.status, "error": None})
                elif self.path == "/metrics":
                    label = api.status.replace("_", "-")
                    text = (
                        "# HELP compute_ctl_up Compute node state\n"
                        "# TYPE compute_ctl_up gauge\n"
                        f'compute_ctl_up{{build_tag="latest",status="{label}"}} 1.0\n'
                    )
                    self.answer(200, text.encode())
                else:
                    self.answer(404, b"")

            def answer(self, code: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join()


@pytest.fixture
def probe_bin(tmp_path: Path) -> Path:
    """A directory with `compute-ctl-probe`, as the image installs it."""
    bindir = tmp_path / "probe-bin"
    bindir.mkdir()
    (bindir / "compute-ctl-probe").symlink_to(PROBE)
    return bindir


def run_probe(
    command: list[str], probe_bin: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PATH": f"{probe_bin}:{os.environ['PATH']}", **env}
    for name in list(full_env):  # only what the test says, whatever this shell has set
        if name.startswith("COMPUTE_CTL_PROBE_") and name not in env:
            del full_env[name]
    return subprocess.run(
        command, env=full_env, capture_output=True, text=True, check=False, timeout=TIMEOUT
    )


def ready_statuses(
    api: FakeApi, command: list[str], probe_bin: Path, env: dict[str, str]
) -> set[str]:
    """The statuses for which the readiness command succeeds."""
    ready: set[str] = set()
    for status in ComputeStatus:
        api.status = status.value
        result = run_probe(command, probe_bin, {**env, "EXTERNAL_HTTP_PORT": str(api.port)})
        assert result.returncode in (0, 1), result.stderr
        if result.returncode == 0:
            ready.add(status.value)
    return ready


def test_probe_is_ready_only_when_running(api: FakeApi, probe_bin: Path) -> None:
    assert ready_statuses(api, ["compute-ctl-probe", "ready"], probe_bin, {}) == {"running"}
    assert "/metrics" not in api.requests


def test_probe_reads_metrics_when_status_needs_a_token(api: FakeApi, probe_bin: Path) -> None:
    api.token = "secret"
    assert ready_statuses(api, ["compute-ctl-probe"], probe_bin, {}) == {"running"}
    assert "/metrics" in api.requests


def test_probe_sends_its_token(api: FakeApi, probe_bin: Path, tmp_path: Path) -> None:
    api.token = "secret"
    token_file = tmp_path / "token"
    token_file.write_text("secret\n")
    env = {"COMPUTE_CTL_PROBE_TOKEN_FILE": str(token_file)}
    assert ready_statuses(api, ["compute-ctl-probe"], probe_bin, env) == {"running"}
    assert "/metrics" not in api.requests


def test_probe_fails_when_nothing_answers(probe_bin: Path) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        result = run_probe(["compute-ctl-probe"], probe_bin, {"COMPUTE_CTL_PROBE_URL": url})
    assert result.returncode == 1
    assert result.stdout.startswith("not ready:")
    result = run_probe(["compute-ctl-probe", "live"], probe_bin, {})
    assert result.returncode == 2


# ------------------------------------------------------------------------------------------------
# Kubernetes


def manifests() -> dict[str, dict[str, Any]]:
    with MANIFEST.open() as stream:
        documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents)
    return by_kind


def compute_container() -> dict[str, Any]:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"]
    assert len(containers) == 1
    return containers[0]


def container_env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in compute_container()["env"]}


def http_get_ok(port: int, path: str) -> bool:
    """What a kubelet httpGet probe decides: 200–399 is a success."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            code: int = response.status
            return 200 <= code < 400
    except urllib.error.HTTPError:
        return False


def test_kubernetes_probes_are_the_unauthenticated_routes() -> None:
    """readiness → /readyz (200 only in `running`), liveness and startup → /livez (200 in every
    status): tests/unit/test_probe_routes.py checks the answers of both in every status."""
    container = compute_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    unauthenticated = {route.path for route in EXTERNAL_ROUTES if not route.auth}
    paths = {}
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        check = container[name]["httpGet"]
        assert ports[check["port"]] == int(container_env()["EXTERNAL_HTTP_PORT"])
        assert check["path"] in unauthenticated
        paths[name] = check["path"]
    assert paths == {
        "readinessProbe": "/readyz",
        "livenessProbe": "/livez",
        "startupProbe": "/livez",
    }
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 30


def test_kubernetes_image_is_a_local_tag_not_latest() -> None:
    container = compute_container()
    name, _, tag = container["image"].rpartition(":")
    assert (name, tag) == ("compute_ctl", __version__)  # what `make image` tags
    assert container["imagePullPolicy"] == "IfNotPresent"


RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_kubernetes_meets_the_restricted_pod_security_level() -> None:
    """The Pod Security Standards' "restricted" profile, control by control (it includes
    "baseline"), for every container of the pod."""
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    pod_context = pod.get("securityContext", {})
    containers = pod["containers"] + pod.get("initContainers", [])
    # baseline: no host namespaces, host paths or host ports, nothing privileged
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key), key
    for volume in pod["volumes"]:
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUMES, volume
    assert "sysctls" not in pod_context
    for container in containers:
        context = container.get("securityContext", {})
        name = container["name"]
        assert not context.get("privileged"), name
        assert context.get("procMount", "Default") == "Default", name
        assert all("hostPort" not in port for port in container.get("ports", [])), name
        # restricted
        assert context.get("allowPrivilegeEscalation") is False, name
        assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
        assert context.get("runAsUser", pod_context.get("runAsUser")) != 0, name
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), name
        capabilities = context.get("capabilities", {})
        assert capabilities.get("drop") == ["ALL"], name
        assert set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"}, name


def test_kubernetes_manifest_validates_strictly() -> None:
    """Against the schemas of the newest Kubernetes version kubernetes-validate knows, refusing
    unknown fields (`--strict`)."""
    tool = Path(sys.executable).parent / "kubernetes-validate"
    if not tool.exists():
        pytest.fail("kubernetes-validate is missing: it comes with the dev extra")
    result = subprocess.run(
        [str(tool), "--strict", str(MANIFEST)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 3, result.stdout


def test_kubernetes_kustomize_base_renders_the_manifest() -> None:
    base = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert base["resources"] == [MANIFEST.name]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the base is checked as text only")
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFEST.parent)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    rendered = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout)}
    assert rendered == manifests()


def test_kubernetes_ports_and_stop() -> None:
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = compute_container()
    assert {port["containerPort"] for port in container["ports"]} == {3080, 3081, 55432}
    assert pod["terminationGracePeriodSeconds"] > STOP_TIMEOUT
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    uid = re.search(r"^ARG POSTGRES_UID=(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert uid is not None
    assert pod["securityContext"]["runAsUser"] == int(uid.group(1))
    service = manifests()["Service"]
    named = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= named


def test_kubernetes_config_is_a_valid_compute_config(stub_bin: Path) -> None:
    container = compute_container()
    env = container_env()
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    secret = manifests()["Secret"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    config_path = Path(env["CONFIG_PATH"])
    assert config_path.parent == Path(mount["mountPath"])
    config = load_compute_config(secret["stringData"][config_path.name])
    assert config.spec is not None
    resolve(config.spec)
    port = next(s.value for s in config.spec.cluster.settings or [] if s.name == "port")
    # The container's environment, through the image's entrypoint, is a valid command line.
    params = parse_params(entrypoint_argv(stub_bin, {**dockerfile_env(), **env}))
    assert params.config_path == config_path
    assert params.compute_id == env["COMPUTE_ID"]
    assert f":{port}/" in params.connstr
