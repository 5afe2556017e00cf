"""The quoting helpers against upstream's test vectors, plus properties that make the vectors
generalize: every quoted form parses back to its input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compute_ctl.postgres.quoting import (
    database_pg_options,
    escape_conf_value,
    escape_literal,
    option_to_pg,
    options_as_pg,
    pg_quote,
    pg_quote_dollar,
    role_pg_options,
)
from compute_ctl.spec.load import load_compute_spec
from compute_ctl.spec.models import Database, GenericOption, GenericOptions, Role, find_option
from tests.support.paths import FIXTURES


def opt(name: str, value: str | None, vartype: str = "string") -> GenericOption:
    return GenericOption(name=name, value=value, vartype=vartype)


# --------------------------------------------------------------------------------------------
# Vectors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test", "'test'"),
        ("test'", "'test'''"),
        ("test\\'", "E'test\\\\'''"),
        ("test\\'\\'", "E'test\\\\''\\\\'''"),
        ("", "''"),
    ],
)
def test_escape_literal(text: str, expected: str) -> None:
    assert escape_literal(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test", "'test'"),
        ("test'", "'test'''"),
        ("test\\'", "'test\\\\'''"),
        (
            "here's a backslash \\ and a quote ' and a double-quote \" hooray",
            "'here''s a backslash \\\\ and a quote '' and a double-quote \" hooray'",
        ),
        ("two\nlines", "'two\nlines'"),  # newlines are not escaped, as upstream
    ],
)
def test_escape_conf_value(text: str, expected: str) -> None:
    assert escape_conf_value(text) == expected


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ('"name";\\n select 1;', '"""name"";\\n select 1;"'),
        ('zenith "new"', '"zenith ""new"""'),
        ("MyRole", '"MyRole"'),
        ("", '""'),
    ],
)
def test_pg_quote(ident: str, expected: str) -> None:
    assert pg_quote(ident) == expected


def test_pg_quote_is_not_idempotent() -> None:
    assert pg_quote(pg_quote("a")) == '"""a"""'


@pytest.mark.parametrize(
    ("text", "quoted", "outer"),
    [
        ("name", "$x$name$x$", "xx"),
        ("name$", "$x$name$$x$", "xx"),
        ("name$$", "$x$name$$$x$", "xx"),
        ("name$$$", "$x$name$$$$x$", "xx"),
        ("name$$$$", "$x$name$$$$$x$", "xx"),
        ("name$x$", "$xx$name$x$$xx$", "xxx"),
        ("x", "$xx$x$xx$", "xxx"),
        ("xx", "$xxx$xx$xxx$", "xxxx"),
        ("$x", "$xx$$x$xx$", "xxx"),
        ("x$", "$xx$x$$xx$", "xxx"),
        ("$x$", "$xx$$x$$xx$", "xxx"),
        ("xx$", "$xxx$xx$$xxx$", "xxxx"),
        ("$xx", "$xxx$$xx$xxx$", "xxxx"),
        ("$xx$", "$xxx$$xx$$xxx$", "xxxx"),
    ],
)
def test_pg_quote_dollar(text: str, quoted: str, outer: str) -> None:
    assert pg_quote_dollar(text) == (quoted, outer)


def test_role_options_md5_password() -> None:
    role = Role(name="postgres", encrypted_password="6b1d16b78004bbd51fa06af9eda75972")
    assert role_pg_options(role) == " LOGIN PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'"


def test_role_options_null_password() -> None:
    assert role_pg_options(Role(name="alexk")) == " LOGIN PASSWORD NULL"


def test_role_options_with_options() -> None:
    role = Role(name="alexk", options=[opt("IN ROLE pg_monitor", None)])
    assert role_pg_options(role) == "IN ROLE pg_monitor LOGIN PASSWORD NULL"


def test_role_options_scram_password_kept_whole() -> None:
    verifier = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
    role = Role(name="r", encrypted_password=verifier)
    assert role_pg_options(role) == f" LOGIN PASSWORD '{verifier}'"


def test_database_options() -> None:
    database = Database(
        name="DB2",
        owner="alexk",
        options=[
            opt("LC_COLLATE", "C"),
            opt("LC_CTYPE", "C"),
            opt("TEMPLATE", "template0", "enum"),
        ],
    )
    assert (
        database_pg_options(database)
        == "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER \"alexk\""
    )


def test_database_options_null() -> None:
    assert database_pg_options(Database(name="zen", owner="zen")) == ' OWNER "zen"'


def test_fixture_roles_and_databases() -> None:
    """The same vectors, reached through a whole spec file (tests/fixtures/)."""
    spec = load_compute_spec((FIXTURES / "spec-gucs-only.json").read_bytes())
    roles = {role.name: role for role in spec.cluster.roles}
    databases = {db.name: db for db in spec.cluster.databases}
    assert role_pg_options(roles["postgres"]) == (
        " LOGIN PASSWORD 'md5376109fc33677ff44748e50ff2e399ff'"
    )
    assert role_pg_options(roles["nopass"]) == " LOGIN PASSWORD NULL"
    assert database_pg_options(databases["Collated"]) == (
        "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER \"nopass\""
    )
    assert database_pg_options(databases["owned"]) == ' OWNER "owner1"'
    assert pg_quote(roles['quote "me"'].name) == '"quote ""me"""'


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (opt("CONNECTION LIMIT", "10", "integer"), "CONNECTION LIMIT 10"),
        (opt("LC_COLLATE", "C"), "LC_COLLATE 'C'"),
        (opt("COMMENT", "a\\b"), "COMMENT E'a\\\\b'"),
        (opt("NOSUPERUSER", None, "bool"), "NOSUPERUSER"),
    ],
)
def test_option_to_pg(option: GenericOption, expected: str) -> None:
    assert option_to_pg(option) == expected


def test_options_as_pg() -> None:
    assert options_as_pg(None) == ""
    assert options_as_pg([]) == ""
    assert options_as_pg([opt("A", None), opt("B", "b"), opt("C", "3", "int")]) == "A B 'b' C 3"


def test_generic_options_search() -> None:
    options = [opt("present_value", "value"), opt("missed_value", None, "int")]
    assert find_option(options, "present_value") == "value"
    assert find_option(options, "missed_value") is None
    assert find_option(options, "invalid_value") is None
    empties: tuple[GenericOptions, ...] = ([], None)
    for empty in empties:
        assert find_option(empty, "present_value") is None
        assert find_option(empty, "missed_value") is None
        assert find_option(empty, "invalid_value") is None


# --------------------------------------------------------------------------------------------
# Properties: simple parsers of each quoted form give back the input


def parse_quoted_identifier(text: str) -> str:
    """Read one double-quoted SQL identifier that must span all of `text`."""
    match = re.fullmatch(r'"((?:[^"]|"")*)"', text, flags=re.DOTALL)
    assert match is not None, text
    return match.group(1).replace('""', '"')


def parse_quoted_value(body: str) -> str:
    """Undo `''` and backslash escapes inside a quoted conf value or E'' literal."""
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            out.append(body[i + 1])
            i += 2
        elif char == "'":
            assert body[i + 1] == "'", body
            out.append("'")
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


quote_heavy = st.text(alphabet=st.sampled_from(["a", "'", '"', "\\", "$", "x", " ", "\n", "é"]))


@given(st.text() | quote_heavy)
def test_pg_quote_round_trips(ident: str) -> None:
    assert parse_quoted_identifier(pg_quote(ident)) == ident


@given(st.text() | quote_heavy)
def test_escape_conf_value_round_trips(value: str) -> None:
    quoted = escape_conf_value(value)
    assert quoted.startswith("'") and quoted.endswith("'")
    assert parse_quoted_value(quoted[1:-1]) == value


@given(st.text() | quote_heavy)
def test_escape_literal_round_trips(value: str) -> None:
    quoted = escape_literal(value)
    if "\\" in value:
        assert quoted.startswith("E'")
        body = quoted[2:-1]
        assert parse_quoted_value(body) == value
    else:
        # A standard literal: only doubled quotes.
        assert quoted.startswith("'")
        assert quoted[1:-1].replace("''", "'") == value


@given(st.text() | quote_heavy)
def test_pg_quote_dollar_tag_never_in_input(text: str) -> None:
    quoted, outer = pg_quote_dollar(text)
    tag = outer[:-1]
    assert set(tag) == {"x"}
    assert tag not in text
    assert outer not in quoted
    # Shortest: one `x` fewer would occur in the input.
    assert len(tag) == 1 or tag[:-1] in text
    delimiter = f"${tag}$"
    assert quoted == f"{delimiter}{text}{delimiter}"
    # The body cannot end the quote early.
    assert quoted[len(delimiter) :].index(delimiter) == len(text)
