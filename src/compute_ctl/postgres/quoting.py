"""Upstream-compatible quoting of literals, identifiers and option lists.

These helpers reproduce, byte for byte, the texts upstream compute_ctl produces: values written
into `postgresql.conf`, and the SQL fragments (role/database options, dollar-quoted names) whose
exact spelling tests and operators compare against. They are text builders, not a safe way to
run SQL: statements we *execute* are composed with `psycopg.sql` (`sql.Identifier`,
`sql.Literal`), which quotes according to the server connection. In particular upstream inserts
role passwords unescaped and emits option values of non-string vartypes verbatim; we keep those
quirks here because the point of this module is fidelity, and say so where it happens.
"""

from __future__ import annotations

from compute_ctl.spec.models import Database, GenericOption, GenericOptions, Role


def _double_quotes_and_backslashes(text: str) -> str:
    # Quotes first, then backslashes: the order is what upstream does, and it is harmless
    # because neither replacement produces the other's character.
    return text.replace("'", "''").replace("\\", "\\\\")


def escape_literal(text: str) -> str:
    """A SQL string literal for `text`.

    With `standard_conforming_strings` on, a backslash in `'…'` is literal, so doubling it
    would change the value; the `E'…'` form makes the doubled backslashes mean one backslash
    whatever that setting is. Plain `'…'` is used when no backslash is involved, because that is
    what upstream emits and what its tests expect.
    """
    escaped = _double_quotes_and_backslashes(text)
    if "\\" in escaped:
        return f"E'{escaped}'"
    return f"'{escaped}'"


def escape_conf_value(text: str) -> str:
    """A quoted value for a `postgresql.conf` line.

    The configuration file parser treats backslash as an escape inside quotes and accepts `''`
    for a quote, so both are doubled; there is no `E` prefix in that syntax. Newlines are left as
    they are (upstream does not escape them either), so a value containing one yields a file
    Postgres rejects, exactly as upstream would.
    """
    return f"'{_double_quotes_and_backslashes(text)}'"


def pg_quote(ident: str) -> str:
    """A quoted SQL identifier: always quoted (so case and odd characters survive), `"` doubled.

    Not idempotent: quoting an already quoted name quotes its quotes.
    """
    return '"' + ident.replace('"', '""') + '"'


def pg_quote_dollar(text: str) -> tuple[str, str]:
    """Dollar-quote `text`, returning `(quoted, outer_tag)`.

    The tag is the shortest run of `x` that does not occur in `text`, so the closing delimiter
    cannot appear inside the body. `outer_tag` (one `x` longer) is then also absent from the
    quoted text, which lets a caller wrap the result in a `DO $outer$ … $outer$` block.
    """
    tag = "x"
    while tag in text:
        tag += "x"
    return f"${tag}${text}${tag}$", tag + "x"


def option_to_pg(option: GenericOption) -> str:
    """One option as a SQL clause: `NAME`, `NAME 'value'` (vartype string) or `NAME value`.

    A null value yields the bare name, which is how clauses such as `IN ROLE pg_monitor` are
    expressed in a spec. Non-string values are inserted verbatim (upstream does not validate).
    """
    if option.value is None:
        return option.name
    if option.vartype == "string":
        return f"{option.name} {escape_literal(option.value)}"
    return f"{option.name} {option.value}"


def options_as_pg(options: GenericOptions) -> str:
    """All options as SQL clauses separated by one space; an absent list is the empty string."""
    if options is None:
        return ""
    return " ".join(option_to_pg(option) for option in options)


def role_pg_options(role: Role) -> str:
    """The option tail of `CREATE ROLE`/`ALTER ROLE` for a spec role.

    The stored password is a digest: an md5 digest comes without its `md5` prefix, a
    SCRAM-SHA-256 verifier comes complete. Upstream inserts it unescaped (digests contain no
    quotes); we reproduce that text. With no options the result starts with a space, as
    upstream's does.
    """
    password = role.encrypted_password
    if password is None:
        clause = " PASSWORD NULL"
    elif password.startswith("SCRAM-SHA-256"):
        clause = f" PASSWORD '{password}'"
    else:
        clause = f" PASSWORD 'md5{password}'"
    return f"{options_as_pg(role.options)} LOGIN{clause}"


def database_pg_options(database: Database) -> str:
    """The option tail of `CREATE DATABASE` for a spec database: its options, then the owner."""
    return f"{options_as_pg(database.options)} OWNER {pg_quote(database.owner)}"


__all__ = [
    "database_pg_options",
    "escape_conf_value",
    "escape_literal",
    "option_to_pg",
    "options_as_pg",
    "pg_quote",
    "pg_quote_dollar",
    "role_pg_options",
]
