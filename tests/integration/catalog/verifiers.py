"""Password verifiers computed the way Postgres computes them, for known passwords."""

from __future__ import annotations

import base64
import hashlib
import hmac


def md5_digest(password: str, role: str) -> str:
    """The spec form of an md5 password: md5(password || role name), hex, no prefix."""
    return hashlib.md5((password + role).encode()).hexdigest()  # noqa: S324 - Postgres' md5 scheme


def scram_verifier(password: str, salt: bytes = b"0123456789abcdef", iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as Postgres stores it."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
