#!/usr/bin/env python3
"""The readiness probe of a compute_ctl container (installed as `compute-ctl-probe`).

    compute-ctl-probe [ready]    exit 0 only when GET /status says "running", else 1

An HTTP probe cannot read JSON, and every status but `running` (empty, init, failed,
configuration, termination…) means the compute must not take traffic. (Liveness is another
matter: a compute still starting is alive, so the examples check liveness with `GET /metrics`,
which answers 200 in every state.)

`/status` needs a JWT when compute_ctl was started with JWKS keys (`--config`); give the probe
one with COMPUTE_CTL_PROBE_TOKEN or COMPUTE_CTL_PROBE_TOKEN_FILE. Without a token that is
accepted, the probe reads the same status from the unauthenticated `/metrics`
(`compute_ctl_up{status="..."} 1`). The port is EXTERNAL_HTTP_PORT (3080), the variable the
container's entrypoint reads too; COMPUTE_CTL_PROBE_URL overrides the whole base URL.

Only the standard library is used, so any python3 runs it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

READY_STATUS = "running"
AUTH_REFUSALS = (400, 401, 403)
UP_SAMPLE_RE = re.compile(r'^compute_ctl_up\{[^}]*\bstatus="([^"]*)"[^}]*\}\s+1(?:\.0)?\s*$')


class ProbeError(Exception):
    pass


def base_url() -> str:
    explicit = os.environ.get("COMPUTE_CTL_PROBE_URL")
    if explicit:
        return explicit.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('EXTERNAL_HTTP_PORT') or 3080}"


def token() -> str | None:
    value = os.environ.get("COMPUTE_CTL_PROBE_TOKEN")
    path = os.environ.get("COMPUTE_CTL_PROBE_TOKEN_FILE")
    if not value and path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ProbeError(f"{path}: {exc.strerror}") from None
    return value or None


def get(url: str, timeout: float, bearer: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a local http URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{url}: {getattr(exc, 'reason', exc)}") from None


def status_from_metrics(text: str) -> str:
    for line in text.splitlines():
        match = UP_SAMPLE_RE.match(line)
        if match:
            return match.group(1)
    raise ProbeError("/metrics has no compute_ctl_up sample")


def current_status(timeout: float) -> str:
    """The compute's status, from /status (or /metrics when /status refuses us)."""
    base = base_url()
    code, body = get(f"{base}/status", timeout, token())
    if code == 200:
        try:
            status = json.loads(body)["status"]
        except (ValueError, KeyError, TypeError):
            raise ProbeError(f"/status answered something else than a status: {body!r}") from None
        if not isinstance(status, str):
            raise ProbeError(f"/status has a non-string status: {status!r}")
        return status
    if code not in AUTH_REFUSALS:
        raise ProbeError(f"/status answered {code}")
    code, body = get(f"{base}/metrics", timeout)
    if code != 200:
        raise ProbeError(f"/status needs a token and /metrics answered {code}")
    return status_from_metrics(body.decode("utf-8", "replace"))


def main(argv: list[str]) -> int:
    if argv not in ([], ["ready"]):
        print("usage: compute-ctl-probe [ready]", file=sys.stderr)
        return 2
    timeout = float(os.environ.get("COMPUTE_CTL_PROBE_TIMEOUT") or 5)
    try:
        status = current_status(timeout)
    except ProbeError as exc:
        print(f"not ready: {exc}")
        return 1
    print(f"status: {status}")
    return 0 if status == READY_STATUS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
