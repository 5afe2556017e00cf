"""`host:port` addresses that end up inside generated configuration files.

rsyslog's configuration language cannot quote a stray quote or newline away, so an address
written into it must be proven harmless first: a DNS name, an IPv4 address or a bracketed IPv6
address, and a port. The spec layer uses the same check to refuse a bad `logs_export_host` when
the spec arrives rather than when the compute starts.
"""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` → (host, port). The host is a DNS name (letters, digits, hyphens, dots;
    lower-cased), an IPv4 address or a bracketed IPv6 address (returned without brackets);
    the port 1–65535. Anything else raises ValueError saying what is wrong, without echoing
    the value (it may come from an environment variable an operator wants kept private)."""
    expected = "expected host:port"
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{expected}: unclosed '[' around an IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{expected}: not a valid IPv6 address in []") from None
        if not rest.startswith(":"):
            raise ValueError(f"{expected}: the port is missing")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            raise ValueError(f"{expected}: the port is missing")
        if not host:
            raise ValueError(f"{expected}: the host is missing")
        if ":" in port_text:
            raise ValueError(f"{expected}: write an IPv6 address as [address]:port")
        host = _valid_host(host, expected)
    if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{expected}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _valid_host(host: str, expected: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    name = host.lower()
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(
            f"{expected}: the host must be an IP address or a DNS name (letters, "
            "digits and '-' in dot-separated labels)"
        )
    return name
