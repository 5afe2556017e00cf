"""Where the tests find things: the project root and the shared reference folder beside it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = PROJECT_ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
EXAMPLES = PROJECT_ROOT / "examples"
