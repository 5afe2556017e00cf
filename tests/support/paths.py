"""Where the tests find things: the project root, our own spec fixtures (tests/fixtures/), and
upstream's fixtures in the shared reference folder beside the clone, which a bare clone lacks."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
SHARED = PROJECT_ROOT.parent / "shared"
UPSTREAM_FIXTURES = SHARED / "fixtures"
EXAMPLES = PROJECT_ROOT / "examples"
