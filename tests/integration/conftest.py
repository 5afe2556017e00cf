"""Shared integration fixtures: PostgreSQL's binaries, one timeline store with one timeline,
and an Ed25519 key pair for storage tokens.

The store lives in its own directory under the system temp dir rather than pytest's (which is
private to the user running pytest): as root, initdb and the servers run as the unprivileged
`postgres` user, who must be able to reach the data directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from compute_dev.pgbin import PgBinNotFoundError, find_pg_bin
from compute_dev.standins.timelines import Timeline, TimelineStore
from tests.support.pgserver import PgServer, start_server


@pytest.fixture(scope="session")
def pg_bin() -> Path:
    return find_pg_bin()


@pytest.fixture(scope="module")
def plain_pg() -> Iterator[PgServer]:
    """A throwaway cluster with the test defaults, one per test module (skipped without
    PostgreSQL's binaries)."""
    try:
        find_pg_bin()
    except PgBinNotFoundError as exc:
        pytest.skip(str(exc))
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def timeline_store() -> Iterator[TimelineStore]:
    root = Path(tempfile.mkdtemp(prefix="compute-dev-timelines-"))
    root.chmod(0o755)
    try:
        yield TimelineStore(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def timeline(timeline_store: TimelineStore, pg_bin: Path) -> Timeline:
    return timeline_store.create(pg_bin=pg_bin)


@dataclass(frozen=True)
class JwtKeys:
    """A key pair as `neon_local init` makes one: the servers get `public_pem`."""

    private_key: Ed25519PrivateKey
    public_pem: bytes

    def token(self, **claims: Any) -> str:
        """An EdDSA token with exactly these claims (e.g. scope="tenant", tenant_id=...)."""
        return jwt.encode(claims, self.private_key, algorithm="EdDSA")


@pytest.fixture(scope="session")
def jwt_keys() -> JwtKeys:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return JwtKeys(private, public)
