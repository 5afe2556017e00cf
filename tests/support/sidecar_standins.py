"""Real stand-ins for the programs compute_ctl manages beside Postgres.

`start_pgbouncer` runs Debian's pgbouncer (as the server user: pgbouncer refuses root) in the
foreground, with its admin console on a free TCP port of 127.0.0.1 and password authentication,
so tests can see what compute_ctl's tuning did through `SHOW CONFIG`. `start_lock_holder` runs
a small Python process that does what local_proxy does with its pid file: it holds an exclusive
`flock` on it while it runs, and it records every SIGHUP and SIGTERM it receives in a log file.
Each waits until the program is ready (a real condition with a deadline), never by sleeping.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from compute_dev.pgbin import RunAs, server_user
from tests.support.pgserver import free_port

DEADLINE = 30.0
ADMIN_USER = "postgres"
PASSWORD = "s3cret-pgb-pw"  # a throwaway test password


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None


INI_TEMPLATE = """\
; written by tests/support/sidecar_standins.py
[databases]
* = host=127.0.0.1 port={backend_port} user=cloud_admin

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {root}
auth_type = scram-sha-256
auth_file = {root}/userlist.txt
admin_users = {admin}
pidfile = {root}/pgbouncer.pid
logfile = {root}/pgbouncer.log
; the pool size compute_ctl is expected to change
default_pool_size = 20

[users]
"""


@dataclass
class Pgbouncer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def ini(self) -> Path:
        return self.root / "pgbouncer.ini"

    @property
    def pid_file(self) -> Path:
        return self.root / "pgbouncer.pid"

    @property
    def admin_conninfo(self) -> str:
        """The console's address, without the password (as compute_ctl gets it)."""
        return f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={ADMIN_USER}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self.admin_conninfo,
            password=PASSWORD,
            autocommit=True,
            prepare_threshold=None,
            cursor_factory=psycopg.ClientCursor,
            connect_timeout=10,
        )

    def show_config(self) -> dict[str, str]:
        with self.admin() as conn:
            rows = conn.execute("SHOW CONFIG").fetchall()
        return {str(row[0]): str(row[1]) for row in rows}

    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)


def start_pgbouncer(root: Path, backend_port: int, run_as: RunAs | None = None) -> Pgbouncer:
    """pgbouncer in `root` (a directory the server user owns), pooling for a Postgres on
    127.0.0.1:`backend_port`."""
    binary = pgbouncer_binary()
    assert binary is not None, "pgbouncer is not installed (scripts/install.sh test-tools)"
    user = run_as or server_user()
    (root / "userlist.txt").write_text(f'"{ADMIN_USER}" "{PASSWORD}"\n')
    user.chown(root / "userlist.txt")
    last = ""
    for _attempt in range(3):
        port = free_port()
        ini = root / "pgbouncer.ini"
        ini.write_text(
            INI_TEMPLATE.format(backend_port=backend_port, port=port, root=root, admin=ADMIN_USER)
        )
        user.chown(ini)
        process = subprocess.Popen(
            [binary, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=user.preexec(),  # noqa: PLW1509 - pgbouncer refuses to run as root
            env=user.env(),
        )
        bouncer = Pgbouncer(root, port, process)
        deadline = time.monotonic() + DEADLINE
        while process.poll() is None and time.monotonic() < deadline:
            try:
                bouncer.admin().close()
                return bouncer
            except psycopg.OperationalError as exc:
                last = str(exc)
                time.sleep(0.02)
        bouncer.stop()
        last = f"{last}\n{bouncer.log()}"
    raise AssertionError(f"pgbouncer did not start: {last}")


LOCK_HOLDER = """\
import fcntl, os, signal, sys
pid_path, log_path = sys.argv[1], sys.argv[2]
fd = os.open(pid_path, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
def record(signum, frame):
    with open(log_path, "a") as log:
        log.write(signal.Signals(signum).name + "\\n")
    if signum == signal.SIGTERM:
        os._exit(0)
signal.signal(signal.SIGHUP, record)
signal.signal(signal.SIGTERM, record)
print("ready", flush=True)
while True:
    signal.pause()
"""


@dataclass
class LockHolder:
    """A process that holds `pid_file` locked and logs the signals it gets to `signal_log`."""

    process: subprocess.Popen[str]
    pid_file: Path
    signal_log: Path

    def signals(self) -> list[str]:
        return self.signal_log.read_text().split() if self.signal_log.exists() else []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)


def start_lock_holder(pid_file: Path, signal_log: Path, run_as: RunAs | None = None) -> LockHolder:
    user = run_as or server_user()
    process = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(pid_file), str(signal_log)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=user.preexec(),  # noqa: PLW1509 - signalled by a process of that user
        env=user.env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the lock is held, or the child died
    process.stdout.close()
    assert line.strip() == "ready", f"the lock holder did not start (exit {process.poll()})"
    return LockHolder(process, pid_file, signal_log)
