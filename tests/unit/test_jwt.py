"""JWT authorization rules (pure parts and signature checks, no server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from compute_ctl.http.jwt import (
    ClaimsError,
    ComputeClaims,
    JwtAuthorizer,
    bearer_token,
    choose_algorithm,
    judge_claims,
    parse_claims,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Key:
    def __init__(self, kid: str = "k1") -> None:
        self.private = Ed25519PrivateKey.generate()
        self.kid = kid
        self.raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def jwk(self) -> dict[str, Any]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.raw),
            "alg": "EdDSA",
            "kid": self.kid,
        }

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers=headers or None)


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    parts = [b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode())]
    return ".".join([*parts, b64url(signature)])


def hs256(secret: bytes, claims: dict[str, Any]) -> str:
    head = b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


GOOD = {"compute_id": "c1", "scope": None, "aud": None}
ADMIN = {"compute_id": None, "scope": "compute_ctl:admin", "aud": ["compute"]}


# ------------------------------------------------------------------------------------------
# Claims


def test_null_claims_count_as_absent() -> None:
    assert parse_claims({"compute_id": None, "scope": None, "aud": None}) == ComputeClaims(
        None, False, None
    )
    assert parse_claims({}) == ComputeClaims(None, False, None)
    assert parse_claims(ADMIN) == ComputeClaims(None, True, ("compute",))


@pytest.mark.parametrize(
    "claims",
    [
        {"compute_id": 5},
        {"compute_id": ["c1"]},
        {"scope": "compute_ctl:other"},
        {"scope": ""},
        {"aud": "compute"},
        {"aud": [1]},
    ],
)
def test_badly_typed_claims_do_not_decode(claims: dict[str, Any]) -> None:
    with pytest.raises(ClaimsError):
        parse_claims(claims)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (GOOD, None),
        ({"compute_id": "other"}, (403, "invalid compute ID in authorization token claims")),
        ({}, (403, "missing compute_id in authorization token claims")),
        (ADMIN, None),
        ({**ADMIN, "compute_id": "other"}, None),  # admin tokens skip the compute id check
        ({**ADMIN, "aud": None}, (401, "missing audience in authorization token claims")),
        ({**ADMIN, "aud": ["invalid"]}, (401, "invalid audience in authorization token claims")),
        ({**ADMIN, "aud": []}, (401, "invalid audience in authorization token claims")),
    ],
)
def test_claim_rules(claims: dict[str, Any], expected: tuple[int, str] | None) -> None:
    assert judge_claims(parse_claims(claims), "c1") == expected


@given(st.text(), st.text())
def test_a_compute_token_passes_only_for_its_compute(token_id: str, compute_id: str) -> None:
    verdict = judge_claims(ComputeClaims(token_id, False, None), compute_id)
    assert (verdict is None) == (token_id == compute_id)


# ------------------------------------------------------------------------------------------
# Signatures


def test_valid_tokens_verify() -> None:
    key = Key()
    auth = JwtAuthorizer([key.jwk()], "c1")
    assert auth.algorithm == "EdDSA"
    assert auth.verify(key.sign(GOOD)) == ComputeClaims("c1", False, None)
    assert auth.verify(key.sign(ADMIN, kid="unknown-kid")) == ComputeClaims(
        None, True, ("compute",)
    )


def test_every_key_is_tried_and_the_kid_does_not_choose() -> None:
    first, second = Key("a"), Key("b")
    auth = JwtAuthorizer([first.jwk(), second.jwk()], "c1")
    assert auth.verify(second.sign(GOOD, kid="a")) is not None
    assert auth.verify(Key("a").sign(GOOD, kid="a")) is None


def test_refused_tokens() -> None:
    key = Key()
    auth = JwtAuthorizer([key.jwk()], "c1")
    now = int(time.time())
    assert auth.verify("not-a-jwt") is None
    assert auth.verify(unsigned({"alg": "none", "typ": "JWT"}, GOOD)) is None
    assert auth.verify(hs256(key.raw, GOOD)) is None
    assert auth.verify(hs256(b64url(key.raw).encode(), GOOD)) is None
    assert auth.verify(key.sign({**GOOD, "exp": now - 120})) is None
    assert auth.verify(key.sign({**GOOD, "scope": "nope"})) is None
    assert auth.verify(key.sign({**GOOD, "aud": "compute"})) is None
    token = key.sign(GOOD)
    head, body, _ = token.split(".")
    assert auth.verify(f"{head}.{body}.{b64url(b'x' * 64)}") is None


def test_exp_is_checked_only_when_present_with_leeway() -> None:
    key = Key()
    auth = JwtAuthorizer([key.jwk()], "c1")
    now = int(time.time())
    assert auth.verify(key.sign({**GOOD, "exp": now - 30})) is not None
    assert auth.verify(key.sign({**GOOD, "exp": now + 3600})) is not None
    assert auth.verify(key.sign({**GOOD, "nbf": now + 3600, "iat": now + 3600})) is not None


def test_empty_or_unusable_jwks_refuses_everything() -> None:
    key = Key()
    assert JwtAuthorizer([], "c1").verify(key.sign(GOOD)) is None
    broken = JwtAuthorizer([{"kty": "OKP", "crv": "Ed25519"}, {"kid": "x"}], "c1")
    assert broken.keys == []
    assert broken.verify(key.sign(GOOD)) is None


def test_rs256_key_switches_the_algorithm() -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa.public_key()))
    rsa_jwk.update(alg="RS256", kid="rsa")
    ed = Key()
    assert choose_algorithm([ed.jwk(), rsa_jwk]) == "RS256"
    auth = JwtAuthorizer([ed.jwk(), rsa_jwk], "c1")
    assert auth.algorithm == "RS256"
    assert auth.verify(jwt.encode(GOOD, rsa, algorithm="RS256")) is not None
    assert auth.verify(ed.sign(GOOD)) is None


# ------------------------------------------------------------------------------------------
# The Authorization header


def request_with(*values: str) -> Request:
    headers = [(b"authorization", v.encode("latin-1")) for v in values]
    return Request({"type": "http", "method": "GET", "path": "/status", "headers": headers})


@pytest.mark.parametrize(
    ("values", "token"),
    [
        (("Bearer abc",), "abc"),
        (("bearer abc",), "abc"),
        (("BEARER a.b.c",), "a.b.c"),
        ((), None),
        (("Bearer ",), None),
        (("Bearer",), None),
        (("Basic abc",), None),
        (("Bearerabc",), None),
        (("Bearer a", "Bearer b"), None),
        (("Bearer \u00e9",), None),
    ],
)
def test_bearer_header(values: tuple[str, ...], token: str | None) -> None:
    assert bearer_token(request_with(*values)) == token


def test_check_answers() -> None:
    key = Key()
    auth = JwtAuthorizer([key.jwk()], "c1")
    assert auth.check(request_with(f"Bearer {key.sign(GOOD)}")) is None
    for values, status, message in [
        ((), 400, "invalid authorization token"),
        (("Bearer nope",), 401, "failed to verify authorization token"),
        ((f"Bearer {key.sign({})}",), 403, "missing compute_id in authorization token claims"),
    ]:
        answer = auth.check(request_with(*values))
        assert answer is not None
        assert answer.status_code == status
        assert json.loads(bytes(answer.body)) == {"error": message}
