"""Checking a spec's catalog parts (roles, databases, delta operations) before anything runs.

Everything that can be refused is refused here, naming the spec field and the object: names
Postgres would truncate or refuses (reserved role names), passwords it would mistake for
plaintext, options that cannot be turned into quoted SQL, and rename operations without a new
name. Names are shown as short escaped excerpts: they may be huge, or hold control
characters. Resolution runs these checks once (`ParsedSpec.catalog`), so a spec that resolves
cannot fail for these reasons halfway through an apply. The checks are pure and need no
database driver: the catalog layer turns the checked values into SQL
(`compute_ctl.catalog.options`).

Passwords are checked the way Postgres itself checks them: a value that is not a well-formed md5
digest or SCRAM verifier would silently be taken as a *plaintext* password and hashed again,
locking the user out, so such values are refused instead.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from compute_ctl.errors import SpecError, excerpt
from compute_ctl.spec.models import ComputeSpec, Database, DeltaOp, GenericOption, Role

RENAME_ACTIONS = ("rename_db", "rename_role")
ACTED_ON = ("delete_db", "rename_db", "delete_role", "rename_role")

NAMEDATALEN = 64  # Postgres keeps at most NAMEDATALEN - 1 bytes of an identifier

_MD5_DIGEST = re.compile(r"[0-9A-Fa-f]{32}")
_SCRAM = re.compile(r"SCRAM-SHA-256\$([0-9]+):([^$:]+)\$([^$:]+):([^$:]+)")
_SCRAM_KEY_BYTES = 32


def check_name(kind: str, name: str, field_path: str) -> None:
    """Refuse a role or database name Postgres would store differently from the spec.

    A name longer than 63 bytes is silently truncated by Postgres, so the catalog would never
    match the spec and every apply would try to create the object again.
    """
    if not name:
        raise SpecError(field_path, f"{kind} name is empty")
    if "\0" in name:
        raise SpecError(field_path, f"{kind} name {excerpt(name)} contains a NUL character")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        # The JSON decoder refuses lone surrogates; a name from elsewhere is checked here too.
        raise SpecError(field_path, f"{kind} name {excerpt(name)} is not valid Unicode") from None
    if size >= NAMEDATALEN:
        raise SpecError(
            field_path,
            f"{kind} name {excerpt(name)} is {size} bytes long; "
            f"Postgres allows at most {NAMEDATALEN - 1}",
        )


RESERVED_ROLE_NAMES = ("public", "none")
"""Names CREATE ROLE and ALTER ROLE … RENAME TO refuse even quoted ("role name … is reserved"),
as does any name starting with `pg_` (case matters: `PG_x` is allowed)."""


def check_new_role_name(name: str, field_path: str) -> None:
    """`check_name` plus what Postgres refuses for a role it is asked to create or rename to,
    so that such a spec is refused before anything starts instead of failing the apply."""
    check_name("role", name, field_path)
    if name.startswith("pg_"):
        raise SpecError(
            field_path,
            f"role name {excerpt(name)} is reserved: role names starting with pg_ are reserved",
        )
    if name in RESERVED_ROLE_NAMES:
        raise SpecError(field_path, f"role name {excerpt(name)} is reserved")


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def is_scram_verifier(text: str) -> bool:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` with base64 parts and
    32-byte keys, as Postgres' parse_scram_secret accepts it."""
    match = _SCRAM.fullmatch(text)
    if match is None:
        return False
    iterations, salt, stored, server = match.groups()
    if not 0 < int(iterations) < 2**31:
        return False
    salt_bytes = _b64(salt)
    if not salt_bytes:
        return False
    return all(
        (key := _b64(part)) is not None and len(key) == _SCRAM_KEY_BYTES
        for part in (stored, server)
    )


def stored_password(role: Role, field_path: str) -> str | None:
    """What `pg_authid.rolpassword` holds once the spec's password is applied.

    An md5 digest arrives without its `md5` prefix and is stored with it. Postgres recognises
    an md5 hash only in lower-case hex, so the digest is lower-cased (an upper-case digest would
    otherwise be hashed as a plaintext password).
    """
    password = role.encrypted_password
    if password is None:
        return None
    if _MD5_DIGEST.fullmatch(password):
        return "md5" + password.lower()
    if is_scram_verifier(password):
        return password
    raise SpecError(
        field_path,
        f"role {role.name!r}: encrypted_password must be an md5 digest (32 hex digits, without "
        "the 'md5' prefix) or a SCRAM-SHA-256 verifier "
        "(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)",
    )


# --------------------------------------------------------------------------------------------
# Role options

_ROLE_FLAGS = frozenset(
    {
        "SUPERUSER",
        "NOSUPERUSER",
        "CREATEDB",
        "NOCREATEDB",
        "CREATEROLE",
        "NOCREATEROLE",
        "INHERIT",
        "NOINHERIT",
        "LOGIN",
        "NOLOGIN",
        "REPLICATION",
        "NOREPLICATION",
        "BYPASSRLS",
        "NOBYPASSRLS",
    }
)
# Membership clauses (CREATE ROLE only), with their obsolete spellings.
_ROLE_LISTS = {
    "IN ROLE": "IN ROLE",
    "IN GROUP": "IN ROLE",
    "ROLE": "ROLE",
    "USER": "ROLE",
    "ADMIN": "ADMIN",
}
_IDENT_LIST = re.compile(r'\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*(?:,|$)')


@dataclass
class RoleOptions:
    """A role's spec options, understood: flags, limits and membership lists."""

    flags: list[str] = field(default_factory=list)
    connection_limit: int | None = None
    valid_until: str | None = None
    members: dict[str, list[str]] = field(default_factory=dict)  # "IN ROLE"/"ROLE"/"ADMIN"

    @property
    def login_given(self) -> bool:
        return "LOGIN" in self.flags or "NOLOGIN" in self.flags


def _split_keyword(name: str, keywords: set[str] | frozenset[str]) -> tuple[str, str] | None:
    """(keyword, rest) for the longest keyword `name` starts with, ignoring case and spacing."""
    words = name.split()
    for count in (2, 1):
        head = " ".join(words[:count]).upper()
        if len(words) >= count and head in keywords:
            return head, " ".join(words[count:])
    return None


def _ident_list(text: str) -> list[str] | None:
    """Parse `a, "B c"` into names (unquoted names fold to lower case, as in SQL)."""
    names: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _IDENT_LIST.match(text, position)
        if match is None or match.end() == position:
            return None
        token = match.group(1)
        names.append(token[1:-1].replace('""', '"') if token.startswith('"') else token.lower())
        position = match.end()
    return names or None


def parse_role_options(role: Role, field_path: str) -> RoleOptions:
    parsed = RoleOptions()
    keywords = _ROLE_FLAGS | set(_ROLE_LISTS) | {"CONNECTION LIMIT", "VALID UNTIL"}
    for index, option in enumerate(role.options or ()):
        where = f"{field_path}[{index}]"
        split = _split_keyword(option.name, keywords)
        problem = f"role {role.name!r}: unsupported role option {excerpt(option.name)}"
        if split is None:
            raise SpecError(where, problem)
        keyword, rest = split
        argument = option.value if option.value is not None else rest
        if keyword in _ROLE_FLAGS:
            if rest or option.value is not None:
                raise SpecError(where, f"role {role.name!r}: option {keyword} takes no value")
            parsed.flags.append(keyword)
        elif keyword == "CONNECTION LIMIT":
            if not re.fullmatch(r"-?[0-9]+", argument.strip()):
                raise SpecError(where, f"role {role.name!r}: CONNECTION LIMIT needs an integer")
            parsed.connection_limit = int(argument)
        elif keyword == "VALID UNTIL":
            if option.value is None:
                raise SpecError(where, f"role {role.name!r}: VALID UNTIL needs a value")
            parsed.valid_until = option.value
        else:
            names = _ident_list(argument)
            if names is None:
                raise SpecError(where, f"role {role.name!r}: {keyword} needs a list of role names")
            parsed.members.setdefault(_ROLE_LISTS[keyword], []).extend(names)
    return parsed


# --------------------------------------------------------------------------------------------
# Database options

# CREATE DATABASE options and whether their value is an integer (else a string literal, which
# Postgres accepts for every other option, booleans and names included).
_DB_OPTIONS: dict[str, bool] = {
    "TEMPLATE": False,
    "ENCODING": False,
    "STRATEGY": False,
    "LOCALE": False,
    "LC_COLLATE": False,
    "LC_CTYPE": False,
    "BUILTIN_LOCALE": False,
    "ICU_LOCALE": False,
    "ICU_RULES": False,
    "LOCALE_PROVIDER": False,
    "COLLATION_VERSION": False,
    "TABLESPACE": False,
    "ALLOW_CONNECTIONS": False,
    "IS_TEMPLATE": False,
    "CONNECTION LIMIT": True,
    "OID": True,
}


@dataclass(frozen=True)
class DatabaseOption:
    """One CREATE DATABASE option, understood: the keyword and its value (an integer for the
    numeric options, else the text, which Postgres takes as a string literal)."""

    keyword: str
    value: int | str


def _db_option(database: Database, option: GenericOption, where: str) -> DatabaseOption:
    split = _split_keyword(option.name, frozenset(_DB_OPTIONS))
    if split is None or split[1]:
        raise SpecError(
            where,
            f"database {database.name!r}: unsupported database option {excerpt(option.name)}",
        )
    keyword = split[0]
    if option.value is None:
        raise SpecError(where, f"database {database.name!r}: option {keyword} needs a value")
    if _DB_OPTIONS[keyword]:
        if not re.fullmatch(r"-?[0-9]+", option.value.strip()):
            raise SpecError(where, f"database {database.name!r}: {keyword} needs an integer")
        return DatabaseOption(keyword, int(option.value))
    return DatabaseOption(keyword, option.value)


def parse_database_options(database: Database, field_path: str) -> list[DatabaseOption]:
    """The spec's CREATE DATABASE options (OWNER is added by the catalog layer)."""
    return [
        _db_option(database, option, f"{field_path}[{index}]")
        for index, option in enumerate(database.options or ())
    ]


# --------------------------------------------------------------------------------------------
# The whole catalog part of a spec


@dataclass(frozen=True)
class CheckedRole:
    name: str
    password: str | None = field(repr=False)  # as stored in pg_authid: secret
    options: RoleOptions


@dataclass(frozen=True)
class CheckedDatabase:
    spec: Database
    options: tuple[DatabaseOption, ...]


@dataclass(frozen=True)
class CheckedCatalog:
    """The parts of a spec the catalog phases use, validated and converted."""

    roles: tuple[CheckedRole, ...]
    databases: tuple[CheckedDatabase, ...]
    deltas: tuple[DeltaOp, ...]


def check_rename_target(op: DeltaOp, index: int) -> None:
    """A rename needs its new name (upstream crashes applying one without it)."""
    if op.action in RENAME_ACTIONS and op.new_name is None:
        raise SpecError(f"delta_operations[{index}].new_name", f"{op.action} needs a new_name")


def check_catalog(spec: ComputeSpec) -> CheckedCatalog:
    """Validate names, passwords, options and delta operations; raise SpecError naming the
    field and the object on the first problem."""
    roles = []
    for index, role in enumerate(spec.cluster.roles):
        path = f"cluster.roles[{index}]"
        check_new_role_name(role.name, f"{path}.name")
        password = stored_password(role, f"{path}.encrypted_password")
        roles.append(CheckedRole(role.name, password, parse_role_options(role, f"{path}.options")))
    databases = []
    for index, database in enumerate(spec.cluster.databases):
        path = f"cluster.databases[{index}]"
        check_name("database", database.name, f"{path}.name")
        check_name("role", database.owner, f"{path}.owner")
        options = parse_database_options(database, f"{path}.options")
        databases.append(CheckedDatabase(database, tuple(options)))
    deltas = []
    for index, op in enumerate(spec.delta_operations or ()):
        if op.action not in ACTED_ON:
            continue
        kind = "role" if op.action.endswith("_role") else "database"
        check_name(kind, op.name, f"delta_operations[{index}].name")
        if op.action in RENAME_ACTIONS:
            check_rename_target(op, index)
            assert op.new_name is not None  # checked
            new_name_path = f"delta_operations[{index}].new_name"
            if kind == "role":
                check_new_role_name(op.new_name, new_name_path)
            else:
                check_name(kind, op.new_name, new_name_path)
        deltas.append(op)
    return CheckedCatalog(tuple(roles), tuple(databases), tuple(deltas))
