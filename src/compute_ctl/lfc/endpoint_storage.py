"""The LFC state object in endpoint storage: where it lives and one request to it.

The requests use the standard library's client in worker threads: a cancelled request is
abandoned (it ends by itself, bounded by `REQUEST_TIMEOUT`).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from compute_ctl.lfc.errors import NO_SPEC, LfcError

if TYPE_CHECKING:
    from compute_ctl.spec.resolve import ParsedSpec

STATE_KEY = "lfc_state"
REQUEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class EndpointStorageObject:
    """Where one endpoint's LFC state lives, and the token that may read and write it."""

    url: str
    token: str = field(repr=False)


def state_object(pspec: ParsedSpec | None, from_endpoint: str | None) -> EndpointStorageObject:
    """The LFC state object of `from_endpoint`, or of this compute's endpoint when None."""
    if pspec is None:
        raise LfcError(NO_SPEC)
    endpoint_id = from_endpoint if from_endpoint is not None else pspec.spec.endpoint_id
    if endpoint_id is None:
        raise LfcError("pspec.endpoint_id missing, other endpoint_id not provided")
    addr = pspec.endpoint_storage_addr
    if addr is None:
        raise LfcError("pspec.endpoint_storage_addr missing")
    token = pspec.endpoint_storage_token
    if token is None:
        raise LfcError("pspec.endpoint_storage_token missing")
    endpoint = quote(endpoint_id, safe="")
    url = f"http://{addr}/{pspec.tenant_id}/{pspec.timeline_id}/{endpoint}/{STATE_KEY}"
    return EndpointStorageObject(url, token)


@dataclass(frozen=True)
class Download:
    status: int
    body: bytes
    headers_ms: int
    """Time until the status was known (upstream's `state_download_time_ms`)."""
    body_ms: int


def request_object(obj: EndpointStorageObject, method: str, body: bytes | None = None) -> Download:
    """One request to endpoint storage (blocking; run in a worker thread). Transport errors
    raise OSError (or ValueError for an unusable URL)."""
    request = urllib.request.Request(  # noqa: S310 - the URL is http:// by construction
        obj.url, data=body, method=method, headers={"Authorization": f"Bearer {obj.token}"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310
            status = response.status
            headers_at = time.monotonic()
            data = response.read() if status == 200 else b""
    except urllib.error.HTTPError as exc:
        status = exc.code
        headers_at = time.monotonic()
        data = b""
        exc.close()
    return Download(
        status,
        data,
        int((headers_at - started) * 1000),
        int((time.monotonic() - headers_at) * 1000),
    )


def transport_error(what: str, obj: EndpointStorageObject, exc: BaseException) -> LfcError:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return LfcError(f"{what}: error sending request for url ({obj.url}): {reason}")


# --------------------------------------------------------------------------------------------
# zstd
