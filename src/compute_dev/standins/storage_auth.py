"""Storage tokens as the stand-ins check them: EdDSA JWTs verified against Ed25519 public keys,
their claims, and the pageserver's permission rule. One module for the libpq pageserver, the
gRPC pageserver and the safekeepers, so the three accept and refuse the same tokens."""

from __future__ import annotations

import enum
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from compute_ctl.spec.types import TenantId

JWT_LEEWAY = 60
"""Seconds of clock skew tolerated for `exp`, the jsonwebtoken library's default."""


class Scope(enum.StrEnum):
    """The `scope` claim of a storage token (serialized lower-case)."""

    TENANT = "tenant"
    PAGESERVER_API = "pageserverapi"
    SAFEKEEPER_DATA = "safekeeperdata"
    ADMIN = "admin"
    GENERATIONS_API = "generations_api"
    INFRA = "infra"
    SCRUBBER = "scrubber"
    CONTROLLER_PEER = "controller_peer"
    TENANT_ENDPOINT = "tenantendpoint"


class AuthError(Exception):
    """A token that does not decode, or does not grant what was asked."""


@dataclass(frozen=True)
class Claims:
    scope: Scope
    tenant_id: TenantId | None = None
    endpoint_id: uuid.UUID | None = None


class JwtVerifier:
    """Verifies storage tokens: EdDSA only, against one or more Ed25519 public keys.

    Shared by the pageserver and safekeeper stand-ins; the permission rules differ and stay
    in each server.
    """

    def __init__(self, keys: Sequence[Ed25519PublicKey]) -> None:
        if not keys:
            raise ValueError("no public key to verify tokens with")
        self._keys = tuple(keys)

    @classmethod
    def from_pem(cls, data: bytes) -> JwtVerifier:
        return cls([_ed25519_key(data, "the given PEM data")])

    @classmethod
    def from_path(cls, path: Path) -> JwtVerifier:
        """A PEM (SPKI) file, or a directory whose every file is one; each key is tried."""
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        return cls([_ed25519_key(p.read_bytes(), str(p)) for p in files])

    @classmethod
    def coerce(
        cls, source: JwtVerifier | bytes | str | os.PathLike[str] | None
    ) -> JwtVerifier | None:
        """Accept a verifier, PEM bytes, or the path of a key file or directory."""
        if source is None or isinstance(source, JwtVerifier):
            return source
        if isinstance(source, bytes):
            return cls.from_pem(source)
        return cls.from_path(Path(source))

    def decode(self, token: str) -> Claims:
        """The token's claims, if one of the keys signed it and it has not expired."""
        payload: dict[str, Any] | None = None
        for key in self._keys:
            try:
                payload = jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    leeway=JWT_LEEWAY,
                    options={"require": [], "verify_iat": False, "verify_nbf": False},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise AuthError(f"invalid token: {exc}") from None
        if payload is None:
            raise AuthError("invalid token: no key verifies its signature")
        return _claims(payload)


def _ed25519_key(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"{where}: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{where}: not an Ed25519 public key")
    return key


def _claims(payload: dict[str, Any]) -> Claims:
    try:
        scope = Scope(payload["scope"])
    except (KeyError, ValueError):
        raise AuthError("invalid token: missing or unknown scope") from None
    tenant = payload.get("tenant_id")
    endpoint = payload.get("endpoint_id")
    try:
        tenant_id = TenantId(tenant) if isinstance(tenant, str) else None
        endpoint_id = uuid.UUID(endpoint) if isinstance(endpoint, str) and endpoint else None
    except ValueError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    if (tenant is not None and tenant_id is None) or (
        endpoint not in (None, "") and not endpoint_id
    ):
        raise AuthError("invalid token: tenant_id and endpoint_id must be strings")
    return Claims(scope, tenant_id, endpoint_id)


def check_pageserver_permission(claims: Claims | None, tenant_id: TenantId) -> None:
    """The pageserver's per-command rule: `tenant` scope for that tenant, or `pageserverapi`."""
    if claims is None:  # Trust
        return
    if claims.scope is Scope.TENANT:
        if claims.tenant_id != tenant_id:
            raise AuthError("Tenant id mismatch. Permission denied")
    elif claims.scope is not Scope.PAGESERVER_API:
        raise AuthError(f"JWT scope '{claims.scope}' is ineligible for Pageserver auth")
