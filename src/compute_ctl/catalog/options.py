"""Turning checked spec values into SQL we can execute safely: role and database options.

Upstream splices spec text into statements (option names verbatim, passwords unescaped). We build
every statement with `psycopg.sql`, from values that resolution has already understood
(`compute_ctl.spec.catalog_checks`): a keyword from a fixed list, an identifier, a number or a
string literal. Anything that could not be placed in one of those was refused there, before any
statement runs.
"""

from __future__ import annotations

from psycopg import sql

from compute_ctl.catalog.phases import REDACTED
from compute_ctl.spec.catalog_checks import DatabaseOption, RoleOptions


def _role_list(names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


def role_option_clauses(
    options: RoleOptions,
    password: str | None,
    *,
    create: bool,
    in_roles: tuple[str, ...] = (),
) -> tuple[sql.Composable, sql.Composable]:
    """The option clauses of CREATE/ALTER ROLE, as (real, redacted) SQL.

    Membership clauses exist only in CREATE ROLE; `in_roles` (the privileged role) is merged
    with the spec's own IN ROLE list, because Postgres refuses the clause twice. LOGIN is added
    unless the spec says LOGIN or NOLOGIN itself.
    """
    parts: list[sql.Composable] = []
    if create:
        members = dict(options.members)
        wanted_in = [*in_roles, *members.pop("IN ROLE", [])]
        if wanted_in:
            parts.append(sql.SQL("IN ROLE {}").format(_role_list(list(dict.fromkeys(wanted_in)))))
        for keyword in ("ROLE", "ADMIN"):
            if members.get(keyword):
                parts.append(sql.SQL(keyword + " {}").format(_role_list(members[keyword])))
    parts.extend(sql.SQL(flag) for flag in options.flags)
    if not options.login_given:
        parts.append(sql.SQL("LOGIN"))
    if options.connection_limit is not None:
        parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(options.connection_limit)))
    if options.valid_until is not None:
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(options.valid_until)))
    shown = list(parts)
    if password is None:
        parts.append(sql.SQL("PASSWORD NULL"))
        shown.append(sql.SQL("PASSWORD NULL"))
    else:
        parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(password)))
        shown.append(sql.SQL("PASSWORD {}").format(sql.Literal(REDACTED)))
    return sql.SQL(" ").join(parts), sql.SQL(" ").join(shown)


# --------------------------------------------------------------------------------------------
# Database options


def database_option_clause(option: DatabaseOption) -> sql.Composable:
    """One CREATE DATABASE option clause (`CONNECTION LIMIT 5`, `LOCALE 'C'`)."""
    return sql.SQL(option.keyword + " {}").format(sql.Literal(option.value))
