"""Hostile role and database names: the 22 role names of upstream's catalog test (spaces, tabs,
quotes, `$$`, dollar-quote tags, `%I`, emoji, a 63-byte name) and databases named after them."""

from __future__ import annotations

HOSTILE_ROLE_NAMES: tuple[str, ...] = (
    "neondb_owner",
    "role with spaces",
    "role with%20spaces ",
    "role with whitespaces\t",
    "injective role with spaces'; SELECT pg_sleep(1000);",
    "role with #pound-sign and &ampersands=true",
    "role with emoji 🌍",
    "role \";with ';injections $$ $x$ $ %I !/\\&#@",
    '"role in double quotes"',
    "'role in single quotes'",
    "role$",
    "role$$",
    "role$x$",
    "x",
    "xx",
    "$x",
    "x$",
    "$x$",
    "xx$",
    "$xx",
    "$xx$",
    "x" * 63,  # the longest name Postgres keeps
)

# Upstream pairs each hostile database name with the hostile role at the same position.
HOSTILE_DATABASES: tuple[tuple[str, str], ...] = tuple(
    zip(
        (
            "neondb",
            "db with spaces",
            "db with%20spaces ",
            "db with whitespaces\t",
            "injective db with spaces'; SELECT pg_sleep(1000);",
            "db with #pound-sign and &ampersands=true",
            "db with emoji 🌍",
            "db \";with ';injections $$ $x$ $ %I !/\\&#@",
            '"db in double quotes"',
            "'db in single quotes'",
            "db name$",
            "db name$$",
            "db name$x$",
            "x",
            "xx",
            "$x",
            "x$",
            "$x$",
            "xx$",
            "$xx",
            "$xx$",
            "x" * 63,
        ),
        HOSTILE_ROLE_NAMES,
        strict=True,
    )
)


def fit(name: str, limit: int = 63) -> str:
    """`name` cut to at most `limit` bytes of UTF-8 (whole characters only)."""
    while len(name.encode()) > limit:
        name = name[:-1]
    return name


def renamed(name: str) -> str:
    """A different, still hostile, name for `name` (reversed, prefixed, at most 63 bytes)."""
    return fit("ren " + name[::-1])
