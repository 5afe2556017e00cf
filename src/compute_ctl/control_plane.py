"""Fetching the ComputeConfig from the control plane (`-p/--control-plane-uri`).

`GET {base}/compute/api/v2/computes/{compute_id}/spec` (the base is used as given, no slash
normalisation) with `Authorization: Bearer $NEON_CONTROL_PLANE_TOKEN` (empty when unset, read
at each fetch). At most three attempts, 100 ms apart. A transport error, a 200 whose body does
not decode, 502 and 503 are retried; any other status, and `attached` without a spec, fail at
once. Every attempt counts in `compute_ctl_cplane_requests_total{rpc="GetConfig"}` under the
full status line (`"200 OK"`), or `"unknown"` when no answer came.

The client is the standard library's, run in a worker thread by the async entry point: one
small GET does not justify another HTTP dependency. The token is never logged.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from compute_ctl.errors import ComputeError, SpecError
from compute_ctl.spec.load import parse_json, validate
from compute_ctl.spec.models import (
    ComputeCtlConfig,
    ComputeSpec,
    ControlPlaneComputeStatus,
    ControlPlaneConfigResponse,
)

log = logging.getLogger(__name__)

TOKEN_ENV = "NEON_CONTROL_PLANE_TOKEN"  # noqa: S105 - a variable name, not a secret
MAX_ATTEMPTS = 3
RETRY_DELAY = 0.1
REQUEST_TIMEOUT = 30.0
RPC = "GetConfig"
UNKNOWN_STATUS = "unknown"
MAX_BODY_BYTES = 64 * 1024 * 1024

# Where the canonical reason phrases of the control plane's HTTP library differ from Python's.
_REASONS = {
    203: "Non Authoritative Information",
    413: "Payload Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    418: "I'm a teapot",
}

AttemptListener = Callable[[str], None]


def status_line(code: int) -> str:
    """`503` → `503 Service Unavailable`, as the status appears in the metric label."""
    reason = _REASONS.get(code)
    if reason is None:
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = "<unknown status code>"
    return f"{code} {reason}"


class ControlPlaneError(ComputeError):
    """The config could not be obtained; `retryable` says whether another attempt may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ControlPlaneConfig:
    """What the control plane answered: a spec (None when it said `empty`) and settings."""

    status: ControlPlaneComputeStatus
    spec: ComputeSpec | None
    compute_ctl_config: ComputeCtlConfig


def spec_url(base: str, compute_id: str) -> str:
    return f"{base}/compute/api/v2/computes/{compute_id}/spec"


def classify(code: int, body: bytes) -> ControlPlaneConfig:
    """Judge one answer: the config, or a ControlPlaneError saying whether to retry."""
    if code == HTTPStatus.OK:
        try:
            reply = validate(ControlPlaneConfigResponse, parse_json(body))
        except SpecError as exc:
            raise ControlPlaneError(
                f"could not deserialize control plane response: {exc.one_line()}", retryable=True
            ) from None
        if reply.status is ControlPlaneComputeStatus.ATTACHED and reply.spec is None:
            raise ControlPlaneError("compute is attached, but spec is empty", retryable=False)
        return ControlPlaneConfig(reply.status, reply.spec, reply.compute_ctl_config)
    if code == HTTPStatus.SERVICE_UNAVAILABLE:
        raise ControlPlaneError("control plane is temporarily unavailable", retryable=True)
    if code == HTTPStatus.BAD_GATEWAY:
        raise ControlPlaneError("control plane request failed with 502", retryable=True)
    raise ControlPlaneError(
        f"unexpected control plane response status code: {status_line(code)}", retryable=False
    )


def _request_once(url: str, token: str, on_attempt: AttemptListener) -> ControlPlaneConfig:
    request = urllib.request.Request(  # noqa: S310 - the operator gives an http(s) URL
        url, headers={"Authorization": f"Bearer {token}"}, method="GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310
            code, body = response.status, response.read(MAX_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        code, body = exc.code, b""
        exc.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # URLError, timeouts, refused connections, bad URLs, replies that are not HTTP
        on_attempt(UNKNOWN_STATUS)
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ControlPlaneError(
            f"could not perform request to control plane: {reason}", retryable=True
        ) from None
    on_attempt(status_line(code))
    return classify(code, body)


def fetch_config(
    base: str,
    compute_id: str,
    *,
    on_attempt: AttemptListener,
    sleep: Callable[[float], None] = time.sleep,
) -> ControlPlaneConfig:
    """The ComputeConfig from the control plane, with upstream's retries (blocking)."""
    url = spec_url(base, compute_id)
    token = os.environ.get(TOKEN_ENV, "")
    log.info("getting the compute spec from the control plane: %s", url)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return _request_once(url, token, on_attempt)
        except ControlPlaneError as exc:
            if not exc.retryable:
                raise
            log.warning("attempt %d to get the compute spec failed: %s", attempt, exc)
            sleep(RETRY_DELAY)
    raise ControlPlaneError(
        "Exhausted all attempts to retrieve the config from the control plane", retryable=False
    )


async def fetch_config_async(
    base: str, compute_id: str, *, on_attempt: AttemptListener
) -> ControlPlaneConfig:
    """`fetch_config` in a worker thread, for the running compute's event loop."""
    return await asyncio.to_thread(fetch_config, base, compute_id, on_attempt=on_attempt)
