"""The allocator settings: the arena cap and the trim, in a process of their own.

Each case runs in a fresh interpreter so the cap and the trim act on a heap this test owns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from compute_ctl import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = """
import os, sys
from compute_ctl import allocator
capped = allocator.limit_arenas()
print("capped" if capped else "left")
"""

TRIM_PROBE = """
import re
from compute_ctl import allocator

def rss_kib():
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\\s+(\\d+)", status.read()).group(1))

blocks = [bytearray(100_000) for _ in range(2000)]  # ~200 MB in mid-heap chunks
keep = blocks[::400]
del blocks
before = rss_kib()
released = allocator.trim()
after = rss_kib()
print(released, before - after)
"""


def run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_arenas_are_capped_when_the_operator_did_not_choose() -> None:
    assert run(PROBE) == "capped"


def test_an_operators_malloc_arena_max_wins() -> None:
    assert run(PROBE, MALLOC_ARENA_MAX="4") == "left"
    assert allocator.limit_arenas({"MALLOC_ARENA_MAX": "1"}) is False


def test_trim_hands_freed_pages_back() -> None:
    released, freed_kib = run(TRIM_PROBE).split()
    assert released == "True"
    assert int(freed_kib) > 50_000
