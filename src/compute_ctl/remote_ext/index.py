"""From a name (an extension, or a library Postgres wants to load) to the archive that holds
it, following the spec's RemoteExtSpec; and which preload libraries a spec asks for.

Pure functions of the spec: no I/O, so the rules can be tested exhaustively. The rules and the
error texts are upstream's (they reach clients as 404 bodies):

- a library name loses its first `.so` and everything after it (`postgis-3.so` → `postgis-3`),
  then maps through `library_index` (else `library X is not found`);
- the extension must be listed in `public_extensions` or `custom_extensions` (else
  `extension X is not found`) and have `extension_data` (else `real_ext_name X is not found`);
- its archive is `<BUILD_TAG>/<arch>/<vNN>/extensions/<extension>.tar.zst`, relative to the
  gateway's base URL.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass

from compute_ctl.errors import ComputeError
from compute_ctl.remote_ext.errors import ExtensionNotFoundError
from compute_ctl.spec.models import Cluster, RemoteExtSpec, find_option

_LIBRARY_SUFFIX = re.compile(r"\.so.*")
_PG_VERSION = re.compile(r"^PostgreSQL (\d+)\D")
# Libraries that are part of every compute image and never downloaded.
BUILTIN_LIBRARIES = frozenset({"neon", "databricks_auth"})
PRELOAD_SETTING = "shared_preload_libraries"
_PRELOAD_SEPARATORS = re.compile(r"[,' ]")
# Kubernetes (Go) spellings of the machine architectures; others are used verbatim.
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class RemoteArchive:
    """One extension's archive on the gateway."""

    extension: str
    path: str  # relative to the base URL, no leading slash

    @property
    def name(self) -> str:
        """The archive's file name (`anon.tar.zst`): the metric label and de-duplication key."""
        return self.path.rsplit("/", 1)[-1]


def go_arch(machine: str | None = None) -> str:
    """`amd64`/`arm64` for this machine (or `machine`); other architectures verbatim."""
    machine = platform.machine() if machine is None else machine
    return _GO_ARCH.get(machine.lower(), machine)


def pg_major_tag(version_text: str) -> str:
    """`PostgreSQL 15.4 (Debian …)` → `v15`, as the gateway's directories are named."""
    match = _PG_VERSION.match(version_text.strip())
    if match is None:
        raise ComputeError(f"unsupported PostgreSQL version {version_text.strip()!r}")
    return f"v{int(match.group(1))}"


def archive_path(build_tag: str, pg_major: str, extension: str, arch: str | None = None) -> str:
    """`<build_tag>/<arch>/<pg_major>/extensions/<extension>.tar.zst`."""
    return f"{build_tag}/{go_arch(arch)}/{pg_major}/extensions/{extension}.tar.zst"


def is_listed(remote: RemoteExtSpec, extension: str) -> bool:
    """Whether the extension is public or one of this project's custom extensions."""
    return extension in (remote.public_extensions or ()) or extension in (
        remote.custom_extensions or ()
    )


def library_base_name(library: str) -> str:
    """The library name without its first `.so` and whatever follows it."""
    return _LIBRARY_SUFFIX.sub("", library, count=1)


def resolve_archive(
    remote: RemoteExtSpec,
    name: str,
    *,
    is_library: bool,
    build_tag: str,
    pg_major: str,
    arch: str | None = None,
) -> RemoteArchive:
    """The archive holding extension (or library) `name`; ExtensionNotFoundError otherwise."""
    extension = name
    if is_library:
        base = library_base_name(name)
        mapped = remote.library_index.get(base)
        if mapped is None:
            raise ExtensionNotFoundError(f"library {base} is not found")
        extension = mapped
    if not is_listed(remote, extension):
        raise ExtensionNotFoundError(f"extension {extension} is not found")
    if extension not in remote.extension_data:
        raise ExtensionNotFoundError(f"real_ext_name {extension} is not found")
    return RemoteArchive(extension, archive_path(build_tag, pg_major, extension, arch))


def control_files_allowed(remote: RemoteExtSpec, extension: str) -> bool:
    """Whether the control files of `extension` are written at start-up.

    Upstream's rule, kept as it is: an extension is left out only when both lists are given
    and neither names it (with a list missing, every extension in `extension_data` gets its
    control files; downloads still require a listing).
    """
    public, custom = remote.public_extensions, remote.custom_extensions
    if public is None or extension in public:
        return True
    return custom is None or extension in custom


def _split_libraries(text: str) -> list[str]:
    return [
        name for name in _PRELOAD_SEPARATORS.split(text) if name and name not in BUILTIN_LIBRARIES
    ]


def preload_libraries(cluster: Cluster, remote: RemoteExtSpec) -> list[str]:
    """The preload libraries to download before Postgres starts, in order (duplicates kept).

    From the `shared_preload_libraries` setting, then from the last line of `postgresql_conf`
    starting with `shared_preload_libraries` (the text after its first `='`); names are split
    on commas, quotes and spaces; built-in libraries, empty names and names absent from
    `library_index` (assumed installed locally) are left out.
    """
    names: list[str] = []
    setting = find_option(cluster.settings, PRELOAD_SETTING)
    if setting is not None:
        names += _split_libraries(setting)
    if cluster.postgresql_conf is not None:
        last = ""
        for line in cluster.postgresql_conf.split("\n"):
            if line.startswith(PRELOAD_SETTING):
                last = line
        pieces = last.split("='")
        if len(pieces) > 1:
            names += _split_libraries(pieces[1])
    return [name for name in names if name in remote.library_index]
