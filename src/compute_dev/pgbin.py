"""Finding PostgreSQL's programs and running them as an unprivileged user.

`initdb` and `postgres` refuse to run as root. Development tools (and the tests) are often run as
root in containers, so when we are root every server program is started as the `postgres`
system user instead, and the paths it needs are handed over to that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

UNPRIVILEGED_USER = "postgres"


class PgBinNotFoundError(RuntimeError):
    pass


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def find_pg_bin(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding `postgres`: `explicit`, else `$PG_BIN`, else `pg_config --bindir`,
    else the newest `/usr/lib/postgresql/*/bin`."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    else:
        pg_config = shutil.which("pg_config")
        if pg_config:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        installed = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
        candidates.extend(reversed(installed))
    for candidate in candidates:
        if (candidate / "postgres").is_file():
            return candidate
    where = ", ".join(str(c) for c in candidates) or "nowhere"
    raise PgBinNotFoundError(f"no PostgreSQL server binaries found (looked in {where})")


class SwitchUser(TypedDict, total=False):
    """`subprocess.Popen` arguments that start the child as another user."""

    user: int
    group: int
    extra_groups: list[int]


@dataclass(frozen=True)
class RunAs:
    """Who server programs run as: ourselves, or (when we are root) an unprivileged user."""

    uid: int
    gid: int
    name: str

    @property
    def is_self(self) -> bool:
        return self.uid == os.getuid()

    def chown(self, path: Path) -> None:
        """Give `path` (recursively) to this user, so a server started as it can use it."""
        if self.is_self:
            return
        os.chown(path, self.uid, self.gid)
        if path.is_dir() and not path.is_symlink():
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)

    def popen_args(self) -> SwitchUser:
        """What to give `subprocess.Popen` (or asyncio's `create_subprocess_exec`) to start a
        child as this user, with its supplementary groups; nothing when no switch is needed.

        Popen makes the switch itself between fork and exec, so no Python code runs in the
        child: unlike a `preexec_fn`, that is safe in a process with threads (gRPC's, say)."""
        if self.is_self:
            return {}
        return {
            "user": self.uid,
            "group": self.gid,
            "extra_groups": os.getgrouplist(self.name, self.gid),
        }

    def preexec(self) -> Callable[[], None] | None:
        """A `preexec_fn` that drops to this user, or None when no switch is needed (for
        callers without threads; `popen_args` is the safe way)."""
        if self.is_self:
            return None
        uid, gid, name = self.uid, self.gid, self.name

        def demote() -> None:
            os.initgroups(name, gid)
            os.setgid(gid)
            os.setuid(uid)

        return demote

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        if not self.is_self:
            entry = pwd.getpwuid(self.uid)
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        return env


_announced = False


def server_user(announce: bool = False) -> RunAs:
    """The user to run Postgres programs as. As root that is `postgres`; said once on stderr
    when `announce` is set."""
    global _announced  # noqa: PLW0603 - a once-per-process notice
    if os.getuid() != 0:
        entry = pwd.getpwuid(os.getuid())
        return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise PgBinNotFoundError(
            f"running as root and there is no {UNPRIVILEGED_USER!r} user to run Postgres as"
        ) from None
    if announce and not _announced:
        _announced = True
        print(
            f"running as root: PostgreSQL programs will run as the {entry.pw_name!r} user",
            file=sys.stderr,
        )
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
