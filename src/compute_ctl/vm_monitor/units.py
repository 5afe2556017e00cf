"""Byte quantities as the vm-monitor computes and prints them.

Upstream converts bytes to mebibytes as 32-bit floats for its status texts, and the agent (and
people reading its logs) see those texts verbatim, so `mib_text` reproduces that rendering: the
shortest decimal that reads back as the same 32-bit float, never in exponent form.
"""

from __future__ import annotations

import os
import struct
from decimal import Decimal
from pathlib import Path

MiB = 1 << 20


def _f32(value: float) -> float:
    """Round to the nearest 32-bit float (double rounding is exact for one division)."""
    rounded: float = struct.unpack("f", struct.pack("f", value))[0]
    return rounded


def mib_text(num_bytes: int) -> str:
    """`num_bytes` in MiB as upstream prints it: 1073741824 → "1024", 367213363 → "350.2"."""
    value = _f32(_f32(float(num_bytes)) / _f32(float(MiB)))
    digits = f"{value:.9g}"
    for precision in range(1, 10):
        candidate = f"{value:.{precision}g}"
        if _f32(float(candidate)) == value:
            digits = candidate
            break
    text = format(Decimal(digits), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def total_system_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total usable RAM in bytes (`MemTotal`), which is what the initial LFC size and cgroup
    threshold are computed from."""
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == "MemTotal":
                amount, _, unit = rest.strip().partition(" ")
                return int(amount) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
