"""The hostile-input corpus of issue 17, generated: every case is a spec document (JSON text)
and the field its one-line error must name.

Classes: nesting at and past the decoder's depth bound, lone surrogates in every kind of string
a spec carries (names, connection strings, setting values, tokens, URLs, map keys), role names
Postgres reserves, and values so large that echoing them would flood a log or an answer. The
same cases go through `compute-dev spec check` (tests/unit/test_hardening_corpus.py) and through
`compute_ctl -S` and `POST /configure` (tests/e2e/test_hardening_e2e.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.specs import storage_spec

HUGE = 50 * 1024 * 1024  # characters: the 50 MB role name of the report
LONGEST_LINE = 1000  # an error line about a huge value stays below this


@dataclass(frozen=True)
class Case:
    name: str
    text: str  # the spec document
    field: str  # what the error names
    problem: str  # a part of the problem text
    kind: str  # "text": refused while decoding (400 at /configure), "spec": at resolution
    huge: bool = False


def _doc(spec: dict[str, Any]) -> str:
    # ensure_ascii: a lone surrogate is written as its \u escape, as a client would send it.
    return json.dumps(spec, ensure_ascii=True)


def _with_strings(value: str) -> list[tuple[str, dict[str, Any], str]]:
    """(label, spec, field) for `value` placed in each kind of string a spec holds."""
    out: list[tuple[str, dict[str, Any], str]] = []

    def add(label: str, field: str, **over: Any) -> None:
        out.append((label, storage_spec(**over), field))

    add("role-name", "cluster.roles[0].name", cluster={"roles": [{"name": value}], "databases": []})
    add(
        "role-password",
        "cluster.roles[0].encrypted_password",
        cluster={"roles": [{"name": "r", "encrypted_password": value}], "databases": []},
    )
    add(
        "database-name",
        "cluster.databases[0].name",
        cluster={"roles": [], "databases": [{"name": value, "owner": "r"}]},
    )
    add(
        "database-owner",
        "cluster.databases[0].owner",
        cluster={"roles": [], "databases": [{"name": "d", "owner": value}]},
    )
    add("safekeeper", "safekeeper_connstrings[1]", safekeeper_connstrings=["a:1", value])
    add(
        "setting-value",
        "cluster.settings[0].value",
        cluster={
            "roles": [],
            "databases": [],
            "settings": [{"name": "work_mem", "value": value, "vartype": "string"}],
        },
    )
    add("storage-auth-token", "storage_auth_token", storage_auth_token=value)
    add("pageserver-connstring", "pageserver_connstring", pageserver_connstring=value)
    add(
        "libpq-url",
        'pageserver_connection_info.shards["0000"].pageservers[0].libpq_url',
        pageserver_connstring=None,
        pageserver_connection_info={
            "shard_count": 0,
            "shards": {"0000": {"pageservers": [{"libpq_url": value}]}},
        },
    )
    add("tenant-id", "tenant_id", tenant_id=value)
    add("delta-name", "delta_operations[0].name", delta_operations=[{"action": "x", "name": value}])
    add("static-lsn", "mode.Static", mode={"Static": value})
    return out


def _surrogates() -> list[Case]:
    cases = []
    for form_name, value in (("leading", "\ud800x"), ("trailing", "x\udc00"), ("alone", "\udbff")):
        for label, spec, field in _with_strings(value):
            cases.append(
                Case(f"surrogate-{form_name}-{label}", _doc(spec), field, "lone surrogate", "text")
            )
    spec = storage_spec(pgbouncer_settings={"pool\ud800": "x"})
    cases.append(
        Case(
            "surrogate-map-key",
            _doc(spec),
            'pgbouncer_settings["pool\\ud800"]',
            "lone surrogate",
            "text",
        )
    )
    return cases


def _nesting() -> list[Case]:
    deep_spec = _doc(storage_spec()).replace('"format_version"', '"x_extra": [] , "format_version"')

    def nested(depth: int) -> str:
        return deep_spec.replace("[] ,", "[" * depth + "]" * depth + ",", 1)

    return [
        Case("deep-arrays", "[" * 1500, "line 1 column 128", "recursion limit exceeded", "text"),
        Case(
            "deep-objects", '{"a":' * 1500, "line 1 column 636", "recursion limit exceeded", "text"
        ),
        Case(
            "deep-inside-a-spec",
            nested(5000),
            "line 1 column",
            "recursion limit exceeded",
            "text",
        ),
        # The document is level 1 and x_extra's array level 2: 127 levels opened in all pass,
        # the 128th is refused (the control plane's decoder's limit).
        Case("deep-128", nested(127), "line 1 column", "recursion limit exceeded", "text"),
    ]


ACCEPTED_DEPTH = storage_spec(x_extra=json.loads("[" * 126 + "]" * 126))


def _reserved() -> list[Case]:
    cases = []
    for name in ("pg_monitor2", "pg_", "public", "none"):
        spec = storage_spec(cluster={"roles": [{"name": name}], "databases": []})
        cases.append(
            Case(f"reserved-role-{name}", _doc(spec), "cluster.roles[0].name", "reserved", "spec")
        )
    spec = storage_spec(
        delta_operations=[{"action": "rename_role", "name": "a", "new_name": "pg_b"}]
    )
    cases.append(
        Case("reserved-rename-to", _doc(spec), "delta_operations[0].new_name", "reserved", "spec")
    )
    return cases


ACCEPTED_NAMES = storage_spec(
    cluster={
        "roles": [{"name": "PG_upper"}, {"name": "Public"}, {"name": "nonE"}],
        "databases": [{"name": "pg_db", "owner": "PG_upper"}],
    }
)


def _huge() -> list[Case]:
    big = "r" * HUGE
    cases = []
    for label, field in (
        ("role-name", "cluster.roles[0].name"),
        ("database-name", "cluster.databases[0].name"),
        ("static-lsn", "mode"),
        ("tenant-id", "tenant_id"),
    ):
        spec = next(s for lab, s, _ in _with_strings(big) if lab == label)
        # (an LSN is checked by a validator of the whole mode: the error names `mode`)
        kind = "spec" if label in ("role-name", "database-name") else "shape"
        cases.append(Case(f"huge-{label}", _doc(spec), field, "", kind, huge=True))
    # Echoes of the value built into upstream's texts (duplicates) and into keys.
    pair = "s" * (20 * 1024 * 1024)  # twice: the body stays under the 64 MiB limit
    spec = storage_spec(safekeeper_connstrings=[pair, pair])
    cases.append(
        Case(
            "huge-duplicate-safekeeper",
            _doc(spec),
            "safekeeper_connstrings",
            "duplicate",
            "spec",
            True,
        )
    )
    key = "k" * (20 * 1024 * 1024)  # twice: the body stays under the 64 MiB limit
    text = '{"' + key + '": 1, "' + key + '": 2}'
    cases.append(Case("huge-duplicate-key", text, '["kkkk', "duplicate key", "shape", True))
    role = {"name": "r", "options": [{"name": big, "vartype": "string"}]}
    spec = storage_spec(cluster={"roles": [role], "databases": []})
    cases.append(
        Case("huge-role-option", _doc(spec), "cluster.roles[0].options[0]", "", "spec", True)
    )
    return cases


def corpus() -> list[Case]:
    return [*_nesting(), *_surrogates(), *_reserved(), *_huge()]


def with_envelope(text: str) -> bytes:
    """The spec text as the `spec` of a ConfigurationRequest body, byte for byte."""
    return ('{"compute_ctl_config": {"jwks": {"keys": []}}, "spec": ' + text + "}").encode()
