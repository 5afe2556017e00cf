"""rsyslog configuration for the two things that leave a compute through syslog.

* Compliance audit logging (`audit_log_level` Hipaa, Extended or Full): pgaudit writes
  `audit*.log` files into `PGDATA/log`; rsyslog tails them and forwards each record to
  `AUDIT_LOGGING_TLS_ENDPOINT` (over TLS) or `AUDIT_LOGGING_ENDPOINT`, tagged with the endpoint
  and project ids. A garbage collector deletes files rsyslog has had 15 minutes to ship, and
  reports the directory's size as `compute_audit_log_dir_size`.
* Postgres log export (`logs_export_host`): Postgres also logs to syslog, and rsyslog forwards
  the `postgres` program's messages to that collector.

The files, their text and the way rsyslog is restarted are upstream's, so an image built for
upstream's compute_ctl works unchanged. Every value written into a file is validated first:
rsyslog's configuration language has no way to keep a stray quote or newline from becoming a
directive. `COMPUTE_CTL_RSYSLOG_DIR` and `COMPUTE_CTL_RSYSLOG_RESTART` relocate the directory
and replace the restart for tests and installations that run rsyslog differently.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import shlex
import stat
import subprocess
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from compute_ctl.errors import ComputeError
from compute_ctl.files import replace_file
from compute_ctl.spec import hostport
from compute_ctl.spec.models import ComputeAudit, ComputeSpec

log = logging.getLogger(__name__)

DIR_ENV = "COMPUTE_CTL_RSYSLOG_DIR"
RESTART_ENV = "COMPUTE_CTL_RSYSLOG_RESTART"
DEFAULT_DIR = Path("/etc/rsyslog.d")
AUDIT_CONF = "compute_audit_rsyslog.conf"
POSTGRES_LOGS_CONF = "postgres_logs.conf"

PLAIN_ENDPOINT_ENV = "AUDIT_LOGGING_ENDPOINT"
TLS_ENDPOINT_ENV = "AUDIT_LOGGING_TLS_ENDPOINT"

COMMAND_TIMEOUT = 30.0  # pkill, pgrep or the configured restart command
RSYSLOG_WAIT = 5.0  # for rsyslogd to be back after it was killed
GC_INTERVAL = 60.0
GC_MAX_AGE = 15 * 60.0  # pgaudit rotates every 5 minutes; rsyslog gets three rotations' time
GC_PATTERN = "audit*.log"

_COMPLIANCE_LEVELS = frozenset({ComputeAudit.HIPAA, ComputeAudit.EXTENDED, ComputeAudit.FULL})
_ID = re.compile(r"[A-Za-z0-9._-]*\Z")
_UNSAFE_PATH = re.compile(r'["\\\x00-\x1f\x7f*?\[\]]')


class RsyslogError(ComputeError):
    """rsyslog could not be configured or restarted; names the setting at fault."""


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class RsyslogSetup:
    """Where the configuration files go and how rsyslog is made to read them.

    `restart` None is upstream's way: kill every `rsyslogd` and wait (≤ 5 s) until one runs
    again, started by whatever supervises it. A command replaces that; it must exit 0."""

    directory: Path = DEFAULT_DIR
    restart: tuple[str, ...] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RsyslogSetup:
        env = os.environ if environ is None else environ
        directory = Path(env[DIR_ENV]) if env.get(DIR_ENV) else DEFAULT_DIR
        restart: tuple[str, ...] | None = None
        if env.get(RESTART_ENV, "").strip():
            try:
                restart = tuple(shlex.split(env[RESTART_ENV]))
            except ValueError as exc:
                raise RsyslogError(f"{RESTART_ENV}: not a valid command line: {exc}") from None
        return cls(directory, restart)


def parse_host_port(text: str, field: str) -> tuple[str, int]:
    """`host:port` → (host, port), see `compute_ctl.spec.hostport`; RsyslogError naming
    `field` (never echoing the value) when it is not one."""
    try:
        return hostport.parse_host_port(text)
    except ValueError as exc:
        raise RsyslogError(f"{field}: {exc}") from None


def _safe_id(value: str | None, field: str) -> str:
    text = value or ""
    if not _ID.match(text):
        raise RsyslogError(
            f"{field}: only letters, digits, '.', '_' and '-' can be written into the audit "
            "rsyslog configuration"
        )
    return text


# --------------------------------------------------------------------------------------------
# File texts (upstream's templates)


def render_audit_config(
    *,
    log_directory: Path,
    endpoint_id: str,
    project_id: str,
    host: str,
    port: int,
    tls: bool,
) -> str:
    """`compute_audit_rsyslog.conf`. Values must have been validated."""
    return _AUDIT_TEMPLATE.format(
        log_directory=log_directory,
        endpoint_id=endpoint_id,
        project_id=project_id,
        remote_syslog_host=host,
        remote_syslog_port=port,
        remote_syslog_tls="true" if tls else "false",
    )


def render_postgres_logs_config(host: str, port: int) -> str:
    """`postgres_logs.conf`. Values must have been validated."""
    return _POSTGRES_LOGS_TEMPLATE.format(logs_export_target=host, logs_export_port=port)


# --------------------------------------------------------------------------------------------
# Configuring


def audit_endpoint(environ: Mapping[str, str]) -> tuple[str, int, bool]:
    """(host, port, tls) from the environment; the TLS endpoint wins when both are set."""
    tls_endpoint = environ.get(TLS_ENDPOINT_ENV, "")
    if tls_endpoint:
        return (*parse_host_port(tls_endpoint, TLS_ENDPOINT_ENV), True)
    plain_endpoint = environ.get(PLAIN_ENDPOINT_ENV, "")
    if plain_endpoint:
        return (*parse_host_port(plain_endpoint, PLAIN_ENDPOINT_ENV), False)
    raise RsyslogError(f"{PLAIN_ENDPOINT_ENV} and {TLS_ENDPOINT_ENV} are both empty")


def configure_audit(
    setup: RsyslogSetup,
    spec: ComputeSpec,
    log_directory: Path,
    environ: Mapping[str, str],
) -> None:
    """Write `compute_audit_rsyslog.conf` and restart rsyslog."""
    host, port, tls = audit_endpoint(environ)
    if _UNSAFE_PATH.search(str(log_directory)):
        raise RsyslogError(
            "--pgdata: the audit log directory must not contain quotes, backslashes, glob "
            "characters or control characters to be written into the rsyslog configuration"
        )
    text = render_audit_config(
        log_directory=log_directory,
        endpoint_id=_safe_id(spec.endpoint_id, "endpoint_id"),
        project_id=_safe_id(spec.project_id, "project_id"),
        host=host,
        port=port,
        tls=tls,
    )
    path = setup.directory / AUDIT_CONF
    log.info("rsyslog config_content: %s", text)
    _write(path, text)
    log.info("rsyslog configuration file %s added successfully. Starting rsyslogd", path)
    restart_rsyslog(setup)


def configure_postgres_logs_export(setup: RsyslogSetup, logs_export_host: str | None) -> None:
    """With `logs_export_host`: write `postgres_logs.conf` and restart rsyslog, unless the
    file already says the same. Without: nothing (an existing file is left in place; Postgres
    stops logging to syslog once its configuration says so)."""
    if logs_export_host is None:
        return
    host, port = parse_host_port(logs_export_host, "logs_export_host")
    text = render_postgres_logs_config(host, port)
    path = setup.directory / POSTGRES_LOGS_CONF
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise RsyslogError(f"could not read {path}: {_reason(exc)}") from None
    if current == text:
        log.info("postgres logs rsyslog configuration is up-to-date")
        return
    log.info("configuring rsyslog for postgres logs export to: %s:%d", host, port)
    _write(path, text)
    log.info("rsyslog configuration file %s added successfully. Starting rsyslogd", path)
    restart_rsyslog(setup)


async def configure_at_start(
    spec: ComputeSpec,
    pgdata: Path,
    gauge: Gauge,
    environ: Mapping[str, str] | None = None,
) -> Coroutine[Any, Any, None] | None:
    """Start-up steps 4 and 5: audit logging (for Hipaa/Extended/Full) and log export.
    Returns the audit-log garbage collector to run for the rest of the process, if any.
    Raises RsyslogError, which fails the start."""
    env = os.environ if environ is None else environ
    setup = RsyslogSetup.from_env(env)
    gc: Coroutine[Any, Any, None] | None = None
    if spec.audit_log_level in _COMPLIANCE_LEVELS:
        log_directory = pgdata / "log"
        await asyncio.to_thread(configure_audit, setup, spec, log_directory, env)
        gc = run_audit_log_gc(log_directory, gauge)
    await asyncio.to_thread(configure_postgres_logs_export, setup, spec.logs_export_host)
    return gc


async def reconfigure(spec: ComputeSpec, environ: Mapping[str, str] | None = None) -> None:
    """Re-configure step 3: the log export only (audit logging is set up once, at start)."""
    setup = RsyslogSetup.from_env(os.environ if environ is None else environ)
    await asyncio.to_thread(configure_postgres_logs_export, setup, spec.logs_export_host)


def _write(path: Path, text: str) -> None:
    """Replace `path` atomically (a new file gets mode 0644): rsyslog never reads half a file."""
    try:
        replace_file(path, text.encode(), new_mode=0o644)
    except OSError as exc:
        raise RsyslogError(f"could not write {path}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# --------------------------------------------------------------------------------------------
# Restarting rsyslog


def restart_rsyslog(setup: RsyslogSetup) -> None:
    """Make rsyslog read its configuration again (it has no reload for this)."""
    if setup.restart is not None:
        _restart_with_command(setup.restart)
        return
    # Upstream's way: kill it; its supervisor starts it again, and it resumes each tailed file
    # where its state file says it stopped.
    _command(["pkill", "rsyslogd"], "failed to restart rsyslogd")
    _wait_for_rsyslogd()


def _restart_with_command(argv: tuple[str, ...]) -> None:
    if not argv:
        return
    result = _command(list(argv), f"{RESTART_ENV}: could not run the restart command")
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or [""]
        raise RsyslogError(
            f"{RESTART_ENV}: the restart command exited with code {result.returncode}"
            + (f": {detail[0][:200]}" if detail[0] else "")
        )
    log.info("rsyslog restarted with %s", RESTART_ENV)


def _command(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RsyslogError(f"{what}: no answer in {COMMAND_TIMEOUT:g} s") from None
    except OSError as exc:
        raise RsyslogError(f"{what}: {_reason(exc)}") from None


def _wait_for_rsyslogd(max_wait: float = RSYSLOG_WAIT) -> None:
    started = time.monotonic()
    delay = 0.002
    attempt = 1
    while True:
        found = _command(["pgrep", "rsyslogd"], "could not look for rsyslogd")
        if found.stdout.strip():
            return
        if time.monotonic() - started >= max_wait:
            break
        log.info("rsyslogd is not running, attempt %d. Sleeping for %d ms", attempt, delay * 1000)
        time.sleep(delay)
        delay *= 2
        attempt += 1
    raise RsyslogError(
        f"rsyslogd is not running after waiting for {time.monotonic() - started:.0f} seconds "
        f"and {attempt} attempts"
    )


# --------------------------------------------------------------------------------------------
# Audit log garbage collection


def gc_audit_logs(
    directory: Path, *, max_age: float = GC_MAX_AGE, now: float | None = None
) -> list[Path]:
    """Delete `audit*.log` files under `directory` (subdirectories included, symlinks not
    followed) last modified more than `max_age` seconds ago; returns what was deleted."""
    current = time.time() if now is None else now
    deleted = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if not fnmatch.fnmatchcase(name, GC_PATTERN):
                continue
            path = Path(root, name)
            try:
                if current - path.lstat().st_mtime > max_age:
                    path.unlink()
                    deleted.append(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not delete the audit log %s: %s", path, _reason(exc))
    return deleted


def audit_log_dir_size(directory: Path) -> int:
    """Bytes in the regular files directly in `directory` whose names end in `log`."""
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith("log"):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total


async def run_audit_log_gc(
    directory: Path,
    gauge: Gauge,
    *,
    interval: float = GC_INTERVAL,
    max_age: float = GC_MAX_AGE,
) -> None:
    """Every `interval` seconds (the first pass at once): delete old audit logs and set the
    gauge to the directory's size. Runs until cancelled; errors are only logged."""
    log.info("running pgaudit GC main loop")
    while True:
        try:
            await asyncio.to_thread(gc_audit_logs, directory, max_age=max_age)
            size = await asyncio.to_thread(audit_log_dir_size, directory)
        except FileNotFoundError:
            size = 0  # Postgres has not written an audit log yet
        except OSError as exc:
            log.warning("Failed to get log directory size: %s", _reason(exc))
            size = 0
        gauge.set(size)
        await asyncio.sleep(interval)


# The texts below are upstream's configuration files (compute_tools/src/config_template/),
# with str.format fields; braces meant for rsyslog are doubled.

_AUDIT_TEMPLATE = """\
# Load imfile module to read log files
module(load="imfile")

# Input configuration for log files in the specified directory
# The messages can be multiline. The start of the message is a timestamp
# in "%Y-%m-%d %H:%M:%S.%3N GMT" (so timezone hardcoded).
# Replace log_directory with the directory containing the log files
input(type="imfile" File="{log_directory}/*.log"
  Tag="pgaudit_log" Severity="info" Facility="local5"
  startmsg.regex="^[[:digit:]]{{4}}-[[:digit:]]{{2}}-[[:digit:]]{{2}} [[:digit:]]{{2}}:[[:digit:]]{{2}}:[[:digit:]]{{2}}.[[:digit:]]{{3}} GMT,")

# the directory to store rsyslog state files
global(
  workDirectory="/var/log/rsyslog"
  DefaultNetstreamDriverCAFile="/etc/ssl/certs/ca-certificates.crt"
)

# Whether the remote syslog receiver uses tls
set $.remote_syslog_tls = "{remote_syslog_tls}";

# Construct json, endpoint_id and project_id as additional metadata
set $.json_log!endpoint_id = "{endpoint_id}";
set $.json_log!project_id = "{project_id}";
set $.json_log!msg = $msg;

# Template suitable for rfc5424 syslog format
template(name="PgAuditLog" type="string"
    string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% - - - - %$.json_log%")

# Forward to remote syslog receiver (over TLS)
if ( $syslogtag == 'pgaudit_log' ) then {{
  if ( $.remote_syslog_tls == 'true' ) then {{
    action(type="omfwd" target="{remote_syslog_host}" port="{remote_syslog_port}" protocol="tcp"
      template="PgAuditLog"
      queue.type="linkedList"
      queue.size="1000"
      action.ResumeRetryCount="10"
      StreamDriver="gtls"
      StreamDriverMode="1"
      StreamDriverAuthMode="x509/name"
      StreamDriverPermittedPeers="{remote_syslog_host}"
      StreamDriver.CheckExtendedKeyPurpose="on"
      StreamDriver.PermitExpiredCerts="off"
    )
    stop
  }} else {{
    action(type="omfwd" target="{remote_syslog_host}" port="{remote_syslog_port}" protocol="tcp"
      template="PgAuditLog"
      queue.type="linkedList"
      queue.size="1000"
      action.ResumeRetryCount="10"
    )
    stop
  }}
}}
"""  # noqa: E501 - rsyslog's regex is one line

_POSTGRES_LOGS_TEMPLATE = """\
# Program name comes from postgres' syslog_facility configuration: https://www.postgresql.org/docs/current/runtime-config-logging.html#GUC-SYSLOG-IDENT
# Default value is 'postgres'.
if $programname == 'postgres' then {{
    # Forward Postgres logs to telemetry otel collector
    action(type="omfwd" target="{logs_export_target}" port="{logs_export_port}" protocol="tcp"
           template="RSYSLOG_SyslogProtocol23Format"
           action.resumeRetryCount="3"
           queue.type="linkedList" queue.size="1000")
    stop
}}
"""
