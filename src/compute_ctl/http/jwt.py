"""JWT authorization of the external API, as upstream does it.

Keys come from the boot ComputeConfig's JWKS and never change at run time. The algorithm is
EdDSA, or RS256 when any key declares `"alg": "RS256"`; it is the only algorithm accepted, so a
token whose header names another one (`none`, `HS256`, ...) never verifies. Every key is tried
in order (a token's `kid` does not select one); the first that verifies wins. `exp` is checked
when present (60 s leeway); `nbf`, `iat` and `aud` are not checked by the decoder. Then the
claims decide:

- `scope` `compute_ctl:admin` needs an `aud` list containing `compute` (else 401);
- otherwise `compute_id` must equal the compute's id (else 403).

A claim whose value is JSON null counts as absent. A token is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.types import Options
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error

log = logging.getLogger(__name__)

ADMIN_SCOPE = "compute_ctl:admin"
COMPUTE_AUDIENCE = "compute"
LEEWAY_SECONDS = 60
BEARER = "bearer "

INVALID_TOKEN = "invalid authorization token"  # noqa: S105 - an error text
FAILED_TO_VERIFY = "failed to verify authorization token"
MISSING_AUDIENCE = "missing audience in authorization token claims"
INVALID_AUDIENCE = "invalid audience in authorization token claims"
MISSING_COMPUTE_ID = "missing compute_id in authorization token claims"
INVALID_COMPUTE_ID = "invalid compute ID in authorization token claims"

_DECODE_OPTIONS: Options = {
    "verify_signature": True,
    "verify_exp": True,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
}


class ClaimsError(Exception):
    """Claims of the wrong type or an unknown scope: the token does not decode (401)."""


@dataclass(frozen=True)
class ComputeClaims:
    compute_id: str | None
    admin: bool
    audience: tuple[str, ...] | None


def parse_claims(payload: Mapping[str, Any]) -> ComputeClaims:
    """The three claims compute_ctl reads; null counts as absent, other keys are ignored."""
    compute_id = payload.get("compute_id")
    if compute_id is not None and not isinstance(compute_id, str):
        raise ClaimsError("compute_id must be a string")
    scope = payload.get("scope")
    if scope is not None and scope != ADMIN_SCOPE:
        raise ClaimsError("unknown scope")
    aud = payload.get("aud")
    if aud is not None and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
        raise ClaimsError("aud must be an array of strings")
    return ComputeClaims(
        compute_id=compute_id,
        admin=scope is not None,
        audience=tuple(aud) if aud is not None else None,
    )


def judge_claims(claims: ComputeClaims, compute_id: str | None) -> tuple[int, str] | None:
    """None when the claims grant access, else the (status, error message) refusing it."""
    if claims.admin:
        if claims.audience is None:
            return 401, MISSING_AUDIENCE
        if COMPUTE_AUDIENCE not in claims.audience:
            return 401, INVALID_AUDIENCE
        return None
    if claims.compute_id is None:
        return 403, MISSING_COMPUTE_ID
    if claims.compute_id != compute_id:
        return 403, INVALID_COMPUTE_ID
    return None


def bearer_token(request: Request) -> str | None:
    """The token of a well-formed `Authorization: Bearer <token>` header (exactly one)."""
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        return None
    value = values[0]
    if len(value) <= len(BEARER) or value[: len(BEARER)].lower() != BEARER:
        return None
    if not all(0x20 <= ord(ch) < 0x7F or ch == "\t" for ch in value):
        return None
    return value[len(BEARER) :]


def choose_algorithm(keys: Sequence[Mapping[str, Any]]) -> str:
    return "RS256" if any(key.get("alg") == "RS256" for key in keys) else "EdDSA"


def _key_name(index: int, key: Mapping[str, Any]) -> str:
    kid = key.get("kid")
    return repr(kid) if isinstance(kid, str) else f"#{index}"


class JwtAuthorizer:
    """The Authorizer of a compute started with a ComputeConfig (file or control plane)."""

    def __init__(self, keys: Sequence[Mapping[str, Any]], compute_id: str | None) -> None:
        self.compute_id = compute_id
        self.algorithm = choose_algorithm(keys)
        self.keys: list[tuple[str, jwt.PyJWK]] = []
        for index, key in enumerate(keys):
            name = _key_name(index, key)
            try:
                self.keys.append((name, jwt.PyJWK(dict(key), algorithm=self.algorithm)))
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                # The exception text may quote the key; its type is enough.
                log.warning(
                    "JWK %s cannot verify %s tokens (%s): ignored",
                    name,
                    self.algorithm,
                    type(exc).__name__,
                )
        if not self.keys:
            log.warning("no usable JWKS key: every authenticated request will be refused")

    def verify(self, token: str) -> ComputeClaims | None:
        """The claims of a token that one of the keys verifies, else None."""
        for name, key in self.keys:
            try:
                payload = jwt.decode(
                    token,
                    key=key,
                    algorithms=[self.algorithm],
                    leeway=LEEWAY_SECONDS,
                    options=_DECODE_OPTIONS,
                )
                return parse_claims(payload)
            except (jwt.PyJWTError, ClaimsError, ValueError, TypeError) as exc:
                log.warning("failed to decode authorization token using key %s: %s", name, exc)
        return None

    def check(self, request: Request) -> Response | None:
        token = bearer_token(request)
        if token is None:
            return json_error(INVALID_TOKEN, 400)
        claims = self.verify(token)
        if claims is None:
            return json_error(FAILED_TO_VERIFY, 401)
        refusal = judge_claims(claims, self.compute_id)
        if refusal is not None:
            status, message = refusal
            return json_error(message, status)
        return None
