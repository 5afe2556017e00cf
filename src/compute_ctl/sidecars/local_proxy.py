"""local_proxy's configuration: the spec's `local_proxy_config` (JWKS providers and the roles
they authorize), with `tls` replaced by compute_ctl's own TLS settings when TLS is active
(removed otherwise), written as pretty JSON to `config.json`; then a running local_proxy is
told to re-read it with SIGHUP.

local_proxy holds an exclusive lock on its pid file while it runs. If the file is missing or
unlocked, local_proxy is not running and will read the file when it starts: nothing is
signalled. The file is replaced atomically, so local_proxy never reads half of it.
"""

from __future__ import annotations

import json
import logging
import signal

from compute_ctl.errors import ComputeError
from compute_ctl.files import replace_file
from compute_ctl.sidecars.locations import SidecarLocations
from compute_ctl.sidecars.pidfile import read_pid_file, send_signal
from compute_ctl.spec.models import LocalProxySpec, TlsConfig

log = logging.getLogger(__name__)


class LocalProxyError(ComputeError):
    """local_proxy's configuration could not be written."""


def render_config(proxy: LocalProxySpec, tls: TlsConfig | None) -> bytes:
    """What `config.json` holds: serde's pretty form (2-space indent, no final newline)."""
    document = proxy.model_copy(update={"tls": tls}).model_dump(mode="json")
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


def configure_local_proxy(
    proxy: LocalProxySpec, tls: TlsConfig | None, locations: SidecarLocations
) -> None:
    """Write the configuration and notify a running local_proxy (LocalProxyError if the file
    cannot be written). Blocking: run it in a thread from the event loop."""
    path = locations.local_proxy_config
    try:
        replace_file(path, render_config(proxy, tls))
    except OSError as exc:
        raise LocalProxyError(f"could not write {path}: {exc.strerror}") from None
    log.info("local_proxy configuration written to %s", path)
    pid_file = read_pid_file(locations.local_proxy_pid_file)
    if not pid_file.locked:
        return  # not running: it reads the file when it starts
    if pid_file.pid is None:
        # Locked but not (yet) a pid: local_proxy is starting and reads the new file anyway.
        log.warning("local_proxy's pid file %s %s", pid_file.path, pid_file.problem)
        return
    send_signal("local_proxy", pid_file.pid, signal.SIGHUP)
