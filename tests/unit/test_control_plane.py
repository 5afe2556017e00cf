"""The control-plane client: answer classification, retries, the metric label, the token."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from compute_ctl.control_plane import (
    ControlPlaneError,
    classify,
    fetch_config,
    spec_url,
    status_line,
)
from compute_ctl.spec.models import ControlPlaneComputeStatus
from tests.support.specs import storage_spec

KEYS: dict[str, Any] = {"jwks": {"keys": []}}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_status_line_is_the_full_canonical_line() -> None:
    assert status_line(200) == "200 OK"
    assert status_line(503) == "503 Service Unavailable"
    assert status_line(502) == "502 Bad Gateway"
    assert status_line(404) == "404 Not Found"
    assert status_line(413) == "413 Payload Too Large"
    assert status_line(418) == "418 I'm a teapot"
    assert status_line(599) == "599 <unknown status code>"


def test_url_is_plain_concatenation() -> None:
    assert spec_url("http://cp/", "c-1") == "http://cp//compute/api/v2/computes/c-1/spec"


def test_attached_and_empty_answers() -> None:
    attached = classify(
        200, body({"status": "attached", "spec": storage_spec(), "compute_ctl_config": KEYS})
    )
    assert attached.status is ControlPlaneComputeStatus.ATTACHED
    assert attached.spec is not None
    empty = classify(200, body({"status": "empty", "spec": None, "compute_ctl_config": KEYS}))
    assert (empty.status, empty.spec) == (ControlPlaneComputeStatus.EMPTY, None)
    # `empty` with a spec is used as a real spec, as upstream does.
    odd = classify(
        200, body({"status": "empty", "spec": storage_spec(), "compute_ctl_config": KEYS})
    )
    assert odd.spec is not None


@pytest.mark.parametrize(
    ("code", "payload", "retryable", "message"),
    [
        (200, b"{nope", True, "could not deserialize control plane response: "),
        (200, body({"status": "attached"}), True, "could not deserialize control plane response: "),
        (200, body({"status": "gone", "compute_ctl_config": KEYS}), True, "could not deserialize"),
        (
            200,
            body(
                {"status": "attached", "spec": {"format_version": 1.0}, "compute_ctl_config": KEYS}
            ),
            True,
            "could not deserialize control plane response: spec.cluster",
        ),
        (
            200,
            body({"status": "attached", "spec": None, "compute_ctl_config": KEYS}),
            False,
            "compute is attached, but spec is empty",
        ),
        (503, b"", True, "control plane is temporarily unavailable"),
        (502, b"", True, "control plane request failed with 502"),
        (
            500,
            b"",
            False,
            "unexpected control plane response status code: 500 Internal Server Error",
        ),
        (404, b"", False, "unexpected control plane response status code: 404 Not Found"),
        (401, b"", False, "unexpected control plane response status code: 401 Unauthorized"),
        (204, b"", False, "unexpected control plane response status code: 204 No Content"),
    ],
)
def test_classification(code: int, payload: bytes, retryable: bool, message: str) -> None:
    with pytest.raises(ControlPlaneError) as caught:
        classify(code, payload)
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(message)


# ------------------------------------------------------------------------------------------
# Retries against a real HTTP server answering a scripted sequence


class Script:
    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, str | None]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.seen.append((self.path, self.headers.get("Authorization")))
            code, payload = script.answers.pop(0) if script.answers else (500, b"")
            self.send_response(code)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


GOOD = body({"status": "attached", "spec": storage_spec(), "compute_ctl_config": KEYS})


def fetch(base: str) -> tuple[list[str], list[float]]:
    labels: list[str] = []
    sleeps: list[float] = []
    fetch_config(base, "c-1", on_attempt=labels.append, sleep=sleeps.append)
    return labels, sleeps


def test_retries_then_succeeds(server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEON_CONTROL_PLANE_TOKEN", "sekrit")
    base, script = server
    script.answers = [(503, b""), (502, b""), (200, GOOD)]
    labels, sleeps = fetch(base)
    assert labels == ["503 Service Unavailable", "502 Bad Gateway", "200 OK"]
    assert sleeps == [0.1, 0.1]
    assert script.seen == [("/compute/api/v2/computes/c-1/spec", "Bearer sekrit")] * 3


def test_three_attempts_at_most(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEON_CONTROL_PLANE_TOKEN", raising=False)
    base, script = server
    script.answers = [(503, b""), (200, b"garbage"), (503, b""), (200, GOOD)]
    with pytest.raises(ControlPlaneError, match="Exhausted all attempts"):
        fetch(base)
    assert len(script.seen) == 3
    assert script.seen[0][1] == "Bearer "  # an empty token when the variable is unset


def test_non_retryable_fails_at_once(server: tuple[str, Script]) -> None:
    base, script = server
    script.answers = [(404, b""), (200, GOOD)]
    labels: list[str] = []
    with pytest.raises(ControlPlaneError, match="404 Not Found"):
        fetch_config(base, "c-1", on_attempt=labels.append, sleep=lambda _: None)
    assert labels == ["404 Not Found"]


def test_transport_errors_count_as_unknown() -> None:
    labels: list[str] = []
    with pytest.raises(ControlPlaneError, match="Exhausted all attempts"):
        fetch_config("http://127.0.0.1:1", "c-1", on_attempt=labels.append, sleep=lambda _: None)
    assert labels == ["unknown"] * 3
