"""JWT authorization of the external API, against a real compute_ctl process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from tests.support.harness import Compute, SigningKey, b64url, bearer, ctl_config, http

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-jwt"


def raw_token(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    signature = sign(f"{head}.{body}".encode()) if sign else b""
    return f"{head}.{body}.{b64url(signature)}"


def start_empty_with_keys(
    compute: Compute, *keys: SigningKey, env: dict[str, str] | None = None
) -> None:
    path = compute.write("config.json", {"spec": None, "compute_ctl_config": ctl_config(*keys)})
    compute.start("-c", str(path), "-i", COMPUTE_ID, env=env)


def test_jwt_matrix(compute: Compute, signing_key: SigningKey) -> None:
    start_empty_with_keys(compute, signing_key)
    other = SigningKey()
    now = int(time.time())
    good = {"compute_id": COMPUTE_ID, "scope": None, "aud": None}
    public_raw = base64.urlsafe_b64decode(signing_key.jwk()["x"] + "=")

    def hs256_with_public_key(data: bytes) -> bytes:
        return hmac.new(public_raw, data, hashlib.sha256).digest()

    cases: list[tuple[str, dict[str, str], int, str | None]] = [
        ("no header", {}, 400, "invalid authorization token"),
        ("not bearer", {"Authorization": "Basic Zm9vOmJhcg=="}, 400, "invalid authorization token"),
        ("empty bearer", {"Authorization": "Bearer "}, 400, "invalid authorization token"),
        ("malformed token", bearer("not.a.jwt"), 401, "failed to verify authorization token"),
        ("bad signature", bearer(other.token(good)), 401, "failed to verify authorization token"),
        (
            "alg none",
            bearer(raw_token({"alg": "none", "typ": "JWT"}, good)),
            401,
            "failed to verify authorization token",
        ),
        (
            "HS256 signed with the public key",
            bearer(raw_token({"alg": "HS256", "typ": "JWT"}, good, hs256_with_public_key)),
            401,
            "failed to verify authorization token",
        ),
        (
            "wrong compute_id",
            bearer(signing_key.compute_token("someone-else")),
            403,
            "invalid compute ID in authorization token claims",
        ),
        (
            "no compute_id",
            bearer(signing_key.token({})),
            403,
            "missing compute_id in authorization token claims",
        ),
        (
            "admin without audience",
            bearer(signing_key.token({"scope": "compute_ctl:admin"})),
            401,
            "missing audience in authorization token claims",
        ),
        (
            "admin with another audience",
            bearer(signing_key.token({"scope": "compute_ctl:admin", "aud": ["invalid"]})),
            401,
            "invalid audience in authorization token claims",
        ),
        (
            "expired",
            bearer(signing_key.token({**good, "exp": now - 600})),
            401,
            "failed to verify authorization token",
        ),
        (
            "unknown kid (and key)",
            bearer(other.token(good, headers={"kid": "no-such-key"})),
            401,
            "failed to verify authorization token",
        ),
        ("valid compute token", bearer(signing_key.compute_token(COMPUTE_ID)), 200, None),
        ("valid admin token", bearer(signing_key.admin_token()), 200, None),
        (
            "expiring later, known key under another kid",
            bearer(signing_key.token({**good, "exp": now + 600}, headers={"kid": "x"})),
            200,
            None,
        ),
    ]
    for name, headers, status, message in cases:
        answer = http("GET", f"{compute.url}/status", headers=headers)
        assert answer.status == status, (name, answer)
        if message is not None:
            assert answer.json() == {"error": message}, name
        else:
            assert answer.json()["status"] == "empty", name
    # Every guarded route refuses without a token; /metrics and /openapi.json stay open.
    for method, path in [
        ("GET", "/metrics.json"),
        ("POST", "/configure"),
        ("POST", "/terminate"),
        ("POST", "/check_writability"),
        ("GET", "/dbs_and_roles"),
        ("GET", "/database_schema?database=postgres"),
        ("GET", "/insights"),
    ]:
        assert http(method, f"{compute.url}{path}").status == 400, path
    assert http("GET", f"{compute.url}/metrics").status == 200
    assert http("GET", f"{compute.url}/openapi.json").status == 200
    # The internal port never checks (neon_local's client sends its token there too).
    refresh = http("POST", f"{compute.internal_url}/refresh_configuration")
    assert refresh.status == 500
    # Tokens never reach the log.
    log = compute.log()
    for _, headers, _, _ in cases:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if len(token) > 8:
            assert token not in log
    # An empty compute terminated by an admin (as neon_local does) exits 0.
    answer = http("POST", f"{compute.url}/terminate", headers=bearer(signing_key.admin_token()))
    assert answer.status == 200
    assert compute.wait_exit() == 0


def test_instance_id_disables_checks(compute: Compute, signing_key: SigningKey) -> None:
    start_empty_with_keys(compute, signing_key, env={"INSTANCE_ID": "i-123"})
    assert http("GET", f"{compute.url}/status").json()["status"] == "empty"
    assert http("GET", f"{compute.url}/status", headers=bearer("garbage")).status == 200
    assert http("POST", f"{compute.url}/terminate").status == 200
    assert compute.wait_exit() == 0


def test_empty_jwks_refuses_every_token(compute: Compute, signing_key: SigningKey) -> None:
    start_empty_with_keys(compute)
    answer = http("GET", f"{compute.url}/status", headers=bearer(signing_key.admin_token()))
    assert (answer.status, answer.json()) == (
        401,
        {"error": "failed to verify authorization token"},
    )
