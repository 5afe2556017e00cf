"""`compute-dev spec check`: what operators see for good specs and for a corpus of bad ones."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compute_dev.cli import main
from tests.support.paths import EXAMPLES, FIXTURES, PROJECT_ROOT
from tests.support.specs import TENANT, TIMELINE, settings, storage_spec


def run(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["spec", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_example_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(EXAMPLES / "spec.json", capsys)
    assert (code, err) == (0, "")
    facts = json.loads(out)
    assert facts["basebackup"] == {"protocol": "grpc", "url": "grpc://no_user@127.0.0.1:51051"}
    assert facts["postgres_pageserver_connstring"] == "postgres://no_user@127.0.0.1:64000"
    assert facts["mode"] == "Primary"
    assert len(facts["safekeeper_connstrings"]) == 3
    assert list(facts) == [
        "tenant_id",
        "timeline_id",
        "mode",
        "pageserver_connection_info",
        "basebackup",
        "postgres_pageserver_connstring",
        "stripe_size",
        "safekeeper_connstrings",
        "storage_auth_token",
    ]


def test_fixture_with_gucs_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(FIXTURES / "spec-gucs-only.json", capsys)
    assert code == 0
    facts = json.loads(out)
    assert facts["basebackup"] == {"protocol": "libpq", "url": "host=127.0.0.1 port=6401"}
    assert facts["postgres_pageserver_connstring"] == "host=127.0.0.1 port=6401"
    assert facts["tenant_id"] == "3c9e5a1f0b7d42e6a8f1c2d3e4b5a697"


def test_fixture_with_connection_info_and_shards(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(FIXTURES / "spec-connection-info-shards.json", capsys)
    assert code == 0
    facts = json.loads(out)
    assert facts["basebackup"] == {"protocol": "grpc", "url": "grpc://no_user@ps-0:51051"}
    assert facts["postgres_pageserver_connstring"] == (
        "postgres://no_user@ps-0:6400,postgres://no_user@ps-1:6400"
    )
    assert facts["stripe_size"] == 32768
    assert list(facts["pageserver_connection_info"]["shards"]) == ["0002", "0102"]


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (
            "spec-duplicate-safekeeper.json",
            'error: cluster.settings["neon.safekeepers"]: '
            "duplicate entry in safekeeper_connstrings: 127.0.0.1:7501!",
        ),
        (
            "config-placeholder-tenant.json",
            'error: spec.cluster.settings["neon.tenant_id"]: invalid tenant id: '
            "Odd number of digits",
        ),
    ],
)
def test_failing_fixtures(name: str, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(FIXTURES / name, capsys)
    assert (code, out, err) == (1, "", line + "\n")


def test_placeholder_fixture_after_substitution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (FIXTURES / "config-placeholder-tenant.json").read_text()
    text = text.replace("TENANT_ID", TENANT).replace("TIMELINE_ID", TIMELINE)
    code, out, _ = run(write(tmp_path, text), capsys)
    assert code == 0
    assert json.loads(out)["safekeeper_connstrings"][0] == "sk-a:5454"


def test_token_is_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(write(tmp_path, storage_spec(storage_auth_token="eyJ.secret.sig")), capsys)
    assert code == 0
    assert json.loads(out)["storage_auth_token"] == "<redacted>"
    assert "secret" not in out


def test_config_without_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config: dict[str, Any] = {"spec": None, "compute_ctl_config": {"jwks": {"keys": []}}}
    code, out, _ = run(write(tmp_path, config), capsys)
    assert (code, json.loads(out)) == (0, {"spec": None})


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["required"]) == {"format_version", "cluster", "suspend_timeout_seconds"}


# --------------------------------------------------------------------------------------------
# The malformed corpus: each document fails with exit 1 and one line naming the field.


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`storage_spec()` with the value at a dotted path replaced (None deletes if '!')."""
    doc = copy.deepcopy(base if base is not None else storage_spec())
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value == "!delete":
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def _conninfo(**over: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "shard_count": 0,
        "shards": {"0000": {"pageservers": [{"libpq_url": "postgres://ps:1"}]}},
    }
    info.update(over)
    return info


def _spec_with_settings(**values: str | None) -> dict[str, Any]:
    spec = storage_spec(pageserver_connstring=None, tenant_id=None, timeline_id=None)
    spec["cluster"]["settings"] = settings(
        neon__tenant_id=TENANT, neon__timeline_id=TIMELINE, neon__pageserver_connstring="ps"
    ) + settings(**values)
    # Later duplicates must not hide the value under test: put it first.
    spec["cluster"]["settings"].reverse()
    return spec


_ROLE = {"name": "r", "encrypted_password": None}
CORPUS: list[tuple[str, Any, str]] = [
    # Not JSON, or not the right JSON
    ("not-json", "{ nope", "error: line 1 column 3: "),
    ("trailing-comma", '{"a": 1,}', "error: line 1 column 9: "),
    ("empty-file", "", "error: line 1 column 1: "),
    ("array-document", "[]", "error: document: expected a JSON object"),
    ("duplicate-key", '{"cluster": {}, "cluster": {}}', "error: cluster: duplicate key"),
    ("nan", '{"format_version": NaN}', "error: document: NaN"),
    # Required fields
    ("no-format-version", _with("format_version", "!delete"), "error: format_version: required"),
    ("no-cluster", _with("cluster", "!delete"), "error: cluster: required"),
    ("no-suspend-timeout", _with("suspend_timeout_seconds", "!delete"), "error: suspend_timeout"),
    ("no-roles", _with("cluster.roles", "!delete"), "error: cluster.roles: required"),
    ("no-databases", _with("cluster.databases", "!delete"), "error: cluster.databases: required"),
    ("role-without-name", _with("cluster.roles", [{}]), "error: cluster.roles[0].name: required"),
    ("db-without-owner", _with("cluster.databases", [{"name": "d"}]), "cluster.databases[0].owner"),
    (
        "option-no-vartype",
        _with("cluster.settings", [{"name": "x"}]),
        "cluster.settings[0].vartype",
    ),
    ("delta-no-action", _with("delta_operations", [{"name": "x"}]), "delta_operations[0].action"),
    # Wrong types
    ("cluster-string", _with("cluster", "c"), "error: cluster: expected a JSON object"),
    ("roles-object", _with("cluster.roles", {}), "error: cluster.roles: expected a JSON array"),
    ("role-name-number", _with("cluster.roles", [{"name": 5}]), "cluster.roles[0].name: expected"),
    (
        "password-number",
        _with("cluster.roles", [{"name": "r", "encrypted_password": 1}]),
        "cluster.roles[0].encrypted_password: expected a string",
    ),
    ("format-version-string", _with("format_version", "1.0"), "error: format_version: expected"),
    ("suspend-float", _with("suspend_timeout_seconds", 1.5), "error: suspend_timeout_seconds:"),
    ("suspend-string", _with("suspend_timeout_seconds", "60"), "error: suspend_timeout_seconds:"),
    ("suspend-too-big", _with("suspend_timeout_seconds", 2**63), "error: suspend_timeout_seconds:"),
    ("concurrency-negative", _with("reconfigure_concurrency", -1), "reconfigure_concurrency:"),
    ("skip-updates-string", _with("skip_pg_catalog_updates", "yes"), "skip_pg_catalog_updates:"),
    ("generation-too-big", _with("safekeepers_generation", 2**32), "safekeepers_generation:"),
    ("offload-zero", _with("offload_lfc_interval_seconds", 0), "offload_lfc_interval_seconds:"),
    ("safekeepers-string", _with("safekeeper_connstrings", "a:1"), "safekeeper_connstrings:"),
    ("safekeeper-number", _with("safekeeper_connstrings", [1]), "safekeeper_connstrings[0]:"),
    ("pgbouncer-number", _with("pgbouncer_settings", {"pool": 5}), "pgbouncer_settings.pool:"),
    ("features-number", _with("features", [1]), "error: features[0]:"),
    (
        "setting-value-bool",
        _with("cluster.settings", [{"name": "x", "value": True, "vartype": "bool"}]),
        "cluster.settings[0].value: expected a string",
    ),
    # Nulls where upstream forbids them
    ("features-null", _with("features", None), "error: features: must not be null"),
    ("mode-null", _with("mode", None), "error: mode: must not be null"),
    ("sks-null", _with("safekeeper_connstrings", None), "safekeeper_connstrings: must not be null"),
    ("audit-null", _with("audit_log_level", None), "error: audit_log_level: must not be null"),
    ("cluster-null", _with("cluster", None), "error: cluster: must not be null"),
    ("roles-null", _with("cluster.roles", None), "error: cluster.roles: must not be null"),
    ("role-null", _with("cluster.roles", [None]), "error: cluster.roles[0]: must not be null"),
    ("suspend-null", _with("suspend_timeout_seconds", None), "suspend_timeout_seconds: must not"),
    (
        "prefer-null",
        _with("pageserver_connection_info", _conninfo(prefer_protocol=None)),
        "pageserver_connection_info.prefer_protocol: must not be null",
    ),
    # Enumerations
    ("mode-lowercase", _with("mode", "primary"), "error: mode: unknown compute mode"),
    ("mode-bare-static", _with("mode", "Static"), "error: mode: unknown compute mode"),
    ("mode-bad-lsn", _with("mode", {"Static": "16B5A50"}), "error: mode: invalid LSN"),
    ("mode-lsn-number", _with("mode", {"Static": 5}), "error: mode: an LSN must be a string"),
    ("audit-unknown", _with("audit_log_level", "Verbose"), "error: audit_log_level: input should"),
    (
        "protocol-unknown",
        _with("pageserver_connection_info", _conninfo(prefer_protocol="http")),
        "pageserver_connection_info.prefer_protocol",
    ),
    # Ids
    ("tenant-short", _with("tenant_id", "abcd"), "error: tenant_id: invalid tenant id: Invalid s"),
    ("tenant-odd", _with("tenant_id", "abc"), "error: tenant_id: invalid tenant id: Odd number"),
    ("tenant-empty", _with("tenant_id", ""), "error: tenant_id: invalid tenant id"),
    ("timeline-bad-char", _with("timeline_id", "g" * 32), "timeline_id: invalid timeline id: Inv"),
    ("tenant-number", _with("tenant_id", 12), "error: tenant_id: a tenant id must be a string"),
    (
        "tenant-guc-bad",
        _spec_with_settings(neon__tenant_id="TENANT_ID"),
        'error: cluster.settings["neon.tenant_id"]: invalid tenant id',
    ),
    (
        "timeline-guc-bad",
        _spec_with_settings(neon__timeline_id="x" * 32),
        'error: cluster.settings["neon.timeline_id"]: invalid timeline id',
    ),
    # Shard maps
    (
        "shard-key-short",
        _with("pageserver_connection_info", _conninfo(shards={"000": {}})),
        'pageserver_connection_info.shards["000"]: invalid shard index',
    ),
    (
        "shard-key-hex",
        _with("pageserver_connection_info", _conninfo(shards={"zz00": {}})),
        'pageserver_connection_info.shards["zz00"]: invalid shard index',
    ),
    (
        "shard-no-pageservers",
        _with("pageserver_connection_info", _conninfo(shards={"0000": {}})),
        'pageserver_connection_info.shards["0000"].pageservers: required',
    ),
    (
        "shard-count-big",
        _with("pageserver_connection_info", _conninfo(shard_count=256)),
        "pageserver_connection_info.shard_count",
    ),
    (
        "stripe-negative",
        _with("pageserver_connection_info", _conninfo(stripe_size=-1)),
        "pageserver_connection_info.stripe_size",
    ),
    (
        "node-id-string",
        _with(
            "pageserver_connection_info", _conninfo(shards={"0000": {"pageservers": [{"id": "1"}]}})
        ),
        'pageserver_connection_info.shards["0000"].pageservers[0].id',
    ),
    # Missing or conflicting storage information
    (
        "no-storage-info",
        _with("pageserver_connstring", "!delete"),
        "error: pageserver_connection_info: pageserver connection information should be provided",
    ),
    (
        "two-shards-no-stripe",
        _with("pageserver_connstring", "postgres://a,postgres://b"),
        "error: pageserver_connstring: 2 shards but no stripe_size",
    ),
    (
        "guc-stripe-bad",
        _spec_with_settings(neon__stripe_size="16MB"),
        'error: cluster.settings["neon.stripe_size"]: invalid digit found in string',
    ),
    (
        "guc-stripe-empty",
        _spec_with_settings(neon__stripe_size=""),
        'cluster.settings["neon.stripe_size"]: cannot parse integer from empty string',
    ),
    (
        "grpc-without-url",
        _with("pageserver_connection_info", _conninfo(prefer_protocol="grpc")),
        'error: pageserver_connection_info.shards["0000"].pageservers[0].grpc_url: no grpc_url for',
    ),
    (
        "libpq-without-url",
        _with(
            "pageserver_connection_info",
            _conninfo(shards={"0000": {"pageservers": [{"grpc_url": "grpc://ps:2"}]}}),
        ),
        "pageservers[0].libpq_url: no libpq_url for shard 0000",
    ),
    (
        "empty-pageservers",
        _with("pageserver_connection_info", _conninfo(shards={"0000": {"pageservers": []}})),
        "error: pageserver_connection_info: shard 0000 in pageserver_connection_info has an empty",
    ),
    (
        "shard-missing",
        _with("pageserver_connection_info", _conninfo(shard_count=2, stripe_size=8, shards={})),
        "error: pageserver_connection_info: shard 0002 missing from pageserver_connection_info",
    ),
    (
        "shard-1-missing",
        _with(
            "pageserver_connection_info",
            _conninfo(
                shard_count=2,
                stripe_size=8,
                shards={"0002": {"pageservers": [{"libpq_url": "postgres://ps:1"}]}},
            ),
        ),
        "error: pageserver_connection_info: shard 0102 missing from pageserver_connection_info",
    ),
    (
        "wrong-count-byte",
        _with("pageserver_connection_info", _conninfo(shard_count=1)),
        "shard 0001 missing from pageserver_connection_info shard map",
    ),
    ("no-tenant", _with("tenant_id", "!delete"), "error: tenant_id: tenant id should be provided"),
    ("no-timeline", _with("timeline_id", None), "error: timeline_id: timeline id should be"),
    # Safekeepers
    (
        "no-safekeepers",
        _with("safekeeper_connstrings", []),
        "error: safekeeper_connstrings: safekeeper connstrings should be provided",
    ),
    (
        "duplicate-safekeepers",
        _with("safekeeper_connstrings", ["b:1", "a:1", "b:1"]),
        "error: safekeeper_connstrings: duplicate entry in safekeeper_connstrings: b:1!",
    ),
    (
        "duplicate-safekeeper-gucs",
        _with("safekeeper_connstrings", [], _spec_with_settings(neon__safekeepers="x:1,x:1")),
        'error: cluster.settings["neon.safekeepers"]: duplicate entry',
    ),
    # Delta operations upstream would crash on
    (
        "rename-role-no-new-name",
        _with("delta_operations", [{"action": "rename_role", "name": "a"}]),
        "error: delta_operations[0].new_name: rename_role needs a new_name",
    ),
    (
        "rename-db-null-new-name",
        _with(
            "delta_operations",
            [
                {"action": "delete_db", "name": "x"},
                {"action": "rename_db", "name": "a", "new_name": None},
            ],
        ),
        "error: delta_operations[1].new_name: rename_db needs a new_name",
    ),
    # What the catalog step would refuse, refused before anything starts
    (
        "plaintext-password",
        _with("cluster.roles", [{"name": "r", "encrypted_password": "hunter2"}]),
        "error: cluster.roles[0].encrypted_password: ",
    ),
    (
        "role-name-too-long",
        _with("cluster.roles", [{"name": "r" * 64}]),
        "error: cluster.roles[0].name: ",
    ),
    # Envelopes
    (
        "config-no-ctl-config",
        {"spec": storage_spec(), "compute_ctl_config": None},
        "error: compute_ctl_config: must not be null",
    ),
    (
        "config-no-jwks",
        {"spec": storage_spec(), "compute_ctl_config": {}},
        "error: compute_ctl_config.jwks: required",
    ),
    (
        "config-bad-spec",
        {"spec": _with("mode", "primary"), "compute_ctl_config": {"jwks": {"keys": []}}},
        "error: spec.mode: unknown compute mode",
    ),
    (
        "config-spec-unresolvable",
        {"spec": _with("tenant_id", "!delete"), "compute_ctl_config": {"jwks": {"keys": []}}},
        "error: spec.tenant_id: tenant id should be provided",
    ),
]


@pytest.mark.parametrize(("name", "document", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_corpus(
    name: str, document: Any, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(write(tmp_path, document), capsys)
    assert code == 1, name
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert expected in err, err
    assert err.startswith("error: ")


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 50


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(tmp_path / "absent.json", capsys)
    assert code == 1
    assert err == f"error: {tmp_path / 'absent.json'}: No such file or directory\n"


def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, {"cluster": 7})
    result = subprocess.run(
        [sys.executable, "-m", "compute_dev.cli", "spec", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == "error: format_version: required field is missing\n"
