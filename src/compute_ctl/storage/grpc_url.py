"""A pageserver's gRPC URL: the address a channel dials and the text messages may show.

Apart from `storage/grpc.py` so that a process that never loads grpcio (compute_ctl itself,
whose gRPC basebackup runs in a child process: `storage/grpc_child.py`) names the pageserver
exactly as the gRPC client's own errors do.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from compute_ctl.errors import StorageError

__all__ = ["GrpcTarget", "redact"]


@dataclass(frozen=True)
class GrpcTarget:
    """A pageserver gRPC URL, split into what the channel needs and what messages show."""

    url: str
    """The URL as given, minus any password: safe to log."""
    address: str
    """`host:port` (`[v6]:port`) for the channel."""

    @classmethod
    def parse(cls, url: str) -> GrpcTarget:
        """Accept `grpc://[user@]host:port` (and `http://`, which Rust clients need toward a
        grpcio server); any user part is ignored."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            shown = redact(url)
            raise StorageError(
                shown, f"invalid pageserver gRPC URL {shown}: {exc}", transient=False
            ) from None
        shown = redact(url)
        if parts.scheme not in ("grpc", "http"):
            raise StorageError(
                shown,
                f"invalid pageserver gRPC URL {shown}: the scheme must be grpc:// (or http://)",
                transient=False,
            )
        host = parts.hostname
        if not host or port is None:
            raise StorageError(
                shown,
                f"invalid pageserver gRPC URL {shown}: it needs a host and a port",
                transient=False,
            )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls(shown, address)


def redact(url: str) -> str:
    """`url` with the password of its user part (if any) removed."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return url.strip()
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{hostport}"
    return f"{scheme}://{authority}{slash}{path}"
