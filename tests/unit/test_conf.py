"""The rendered `postgresql.conf`, byte for byte, and `line_in_file`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compute_ctl.errors import SpecError
from compute_ctl.postgres.conf import (
    PG_HBA_MD5_LINE,
    SUBSCRIBERS_ENABLED_LINE,
    ConfOptions,
    audit_requires_endpoint,
    line_in_file,
    line_in_file_path,
    render_audit_block,
    render_postgresql_conf,
    render_setting,
    render_settings,
)
from compute_ctl.spec.load import load_compute_config, load_compute_spec
from compute_ctl.spec.models import ComputeAudit, ComputeSpec, GenericOption, TlsConfig
from compute_ctl.spec.resolve import postgres_pageservers
from tests.support.paths import FIXTURES

TENANT = "1f359dd625e519a1a4e8d7509690f6fc"
TIMELINE = "de200bd42b49cc1814412c7e592dd6e9"

# The lines every spec gets after the Neon block with default options and a primary.
LC_LINES = "lc_messages='C.UTF-8'\nlc_monetary='C.UTF-8'\nlc_time='C.UTF-8'\nlc_numeric='C.UTF-8'\n"
TAIL = (
    "neon.extension_server_port=3081\n"
    "neon.disable_logical_replication_subscribers=false\n"
    "include_if_exists = 'compute_ctl_temp_override.conf'\n"
)


def make_spec(**fields: Any) -> ComputeSpec:
    """A spec from JSON fields, through the real loader; the required fields are filled in."""
    data: dict[str, Any] = {
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
        "suspend_timeout_seconds": -1,
    }
    cluster = fields.pop("cluster", {})
    data["cluster"].update(cluster)
    data.update(fields)
    return load_compute_spec(json.dumps(data))


def render(spec: ComputeSpec, **options: Any) -> str:
    """The file as compute_ctl writes it: the pageserver lines as resolution derives them."""
    return render_postgresql_conf(spec, ConfOptions(**options), postgres_pageservers(spec))


def pageserver_connstring_for_postgres(spec: ComputeSpec) -> str | None:
    return postgres_pageservers(spec).connstring


def conninfo(shard_count: int, stripe: int | None, shards: dict[str, Any]) -> dict[str, Any]:
    return {"shard_count": shard_count, "stripe_size": stripe, "shards": shards}


def shard(libpq: str | None, grpc: str | None = None, node: int = 1) -> dict[str, Any]:
    return {"pageservers": [{"id": node, "libpq_url": libpq, "grpc_url": grpc}]}


def neon_block(text: str) -> str:
    """The lines between `# Neon storage settings` + blank line and the `lc_messages` line."""
    start = text.index("# Neon storage settings\n\n") + len("# Neon storage settings\n\n")
    return text[start : text.index("lc_messages=")]


def between(text: str, first: str, last: str) -> str:
    """The text from the line `first` up to and including the line `last`."""
    start = text.index(first + "\n")
    end = text.index(last + "\n", start) + len(last) + 1
    return text[start:end]


# --------------------------------------------------------------------------------------------
# Settings


def fixture_spec() -> ComputeSpec:
    return load_compute_spec((FIXTURES / "spec-gucs-only.json").read_bytes())


def test_settings_serialize_fixture() -> None:
    rendered = render_settings(fixture_spec().cluster.settings)
    lines = rendered.split("\n")
    assert rendered.endswith("\n")
    for expected in (
        "fsync = off",
        "port = 55432",
        "listen_addresses = '0.0.0.0'",
        "neon.tenant_id = '3c9e5a1f0b7d42e6a8f1c2d3e4b5a697'",
        "neon.pageserver_connstring = 'host=127.0.0.1 port=6401'",
        "test.escaping = 'it''s one \\\\ backslash, one '' quote and one \" double quote'",
    ):
        assert expected in lines


def test_settings_serialize_fixture_in_order() -> None:
    spec = fixture_spec()
    assert spec.cluster.settings is not None
    rendered = render_settings(spec.cluster.settings)
    assert rendered.split("\n")[:3] == ["fsync = off", "wal_level = logical", "hot_standby = on"]
    assert len(rendered.split("\n")) == len(spec.cluster.settings) + 1


def test_fixture_renders_settings_inside_markers() -> None:
    spec = fixture_spec()
    text = render(spec)
    block = between(text, "# Managed by compute_ctl: begin", "# Managed by compute_ctl: end")
    inner = block.split("\n", 1)[1].rsplit("# Managed by compute_ctl: end", 1)[0]
    assert inner == render_settings(spec.cluster.settings)
    # Legacy GUC-only storage info: the Neon block stays empty.
    assert neon_block(text) == ""


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (GenericOption(name="fsync", value="off", vartype="bool"), "fsync = off"),
        (GenericOption(name="x", value="it's", vartype="string"), "x = 'it''s'"),
        (GenericOption(name="x", value="a b", vartype="enum"), "x = a b"),
        (GenericOption(name="bare", value=None, vartype="string"), "bare"),
    ],
)
def test_render_setting(option: GenericOption, expected: str) -> None:
    assert render_setting(option) == expected


def test_render_settings_null_empty_and_duplicates() -> None:
    assert render_settings(None) == ""
    assert render_settings([]) == "\n"
    dup = [
        GenericOption(name="a", value="1", vartype="integer"),
        GenericOption(name="a", value="2", vartype="integer"),
    ]
    assert render_settings(dup) == "a = 1\na = 2\n"


def test_settings_null_writes_no_markers() -> None:
    text = render(make_spec())
    assert "# Managed by compute_ctl" not in text


def test_settings_empty_list_writes_one_empty_line() -> None:
    text = render(make_spec(cluster={"settings": []}))
    assert "# Managed by compute_ctl: begin\n\n# Managed by compute_ctl: end\n" in text


# --------------------------------------------------------------------------------------------
# Worked examples

NEON_LOCAL_CONF = (
    "max_wal_senders=10\nwal_log_hints=off\nmax_replication_slots=10\nhot_standby=on\n"
    "shared_buffers=1MB\neffective_io_concurrency=2\nfsync=off\nmax_connections=100\n"
    "wal_level=logical\nwal_sender_timeout=5s\nlisten_addresses='127.0.0.1'\nport=55432\n"
    "wal_keep_size=0\nrestart_after_crash=off\nshared_preload_libraries=neon\n"
    "max_replication_write_lag=15MB\nmax_replication_flush_lag=10GB\n"
    "synchronous_standby_names=walproposer\nneon.safekeepers='localhost:5454'\n"
)

EXAMPLE_8_1 = {
    "spec": {
        "format_version": 1.0,
        "operation_uuid": None,
        "features": [],
        "swap_size_bytes": None,
        "disk_quota_bytes": None,
        "disable_lfc_resizing": None,
        "cluster": {
            "cluster_id": None,
            "name": None,
            "state": None,
            "roles": [{"name": "test", "encrypted_password": None, "options": None}],
            "databases": [
                {
                    "name": "neondb",
                    "owner": "test",
                    "options": None,
                    "restrict_conn": False,
                    "invalid": False,
                }
            ],
            "postgresql_conf": NEON_LOCAL_CONF,
            "settings": None,
        },
        "delta_operations": None,
        "skip_pg_catalog_updates": False,
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "pageserver_connection_info": {
            "shard_count": 0,
            "stripe_size": None,
            "shards": {
                "0000": {
                    "pageservers": [
                        {
                            "id": 1,
                            "libpq_url": "postgres://no_user@127.0.0.1:64000",
                            "grpc_url": "grpc://no_user@127.0.0.1:51051",
                        }
                    ]
                }
            },
            "prefer_protocol": "libpq",
        },
        "pageserver_connstring": "postgres://no_user@127.0.0.1:64000",
        "shard_stripe_size": None,
        "project_id": None,
        "branch_id": None,
        "endpoint_id": "ep-main",
        "safekeepers_generation": 1,
        "safekeeper_connstrings": ["127.0.0.1:5454"],
        "mode": "Primary",
        "storage_auth_token": None,
        "remote_extensions": None,
        "pgbouncer_settings": None,
        "local_proxy_config": None,
        "reconfigure_concurrency": 1,
        "drop_subscriptions_before_start": False,
        "audit_log_level": "Disabled",
        "logs_export_host": None,
        "endpoint_storage_addr": "127.0.0.1:9993",
        "endpoint_storage_token": "eyJhbGciOiJFZERTQSJ9.eyJ0ZW5hbnRfaWQiOi4uLn0.c2ln",
        "autoprewarm": False,
        "offload_lfc_interval_seconds": None,
        "suspend_timeout_seconds": -1,
        "databricks_settings": None,
    },
    "compute_ctl_config": {
        "jwks": {
            "keys": [
                {
                    "use": "sig",
                    "key_ops": ["verify"],
                    "alg": "EdDSA",
                    "kid": "hQ3kO0QJ4m1tR2N8bS6Xy0c5C2VJm0q3n8Zr1bT9dEw",
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": "t3XxQ5w2bX1GQm7E8mJ5nV0lYc4oR9pZqK2sD6fH1aU",
                }
            ]
        },
        "tls": None,
    },
}

EXPECTED_8_1 = (
    NEON_LOCAL_CONF
    + "\n"
    + "# Neon storage settings\n"
    + "\n"
    + "# derived from compute spec's pageserver_connection_info field\n"
    + "neon.pageserver_connstring='postgres://no_user@127.0.0.1:64000'\n"
    + "neon.safekeepers='g#1:127.0.0.1:5454'\n"
    + f"neon.tenant_id='{TENANT}'\n"
    + f"neon.timeline_id='{TIMELINE}'\n"
    + "neon.endpoint_id='ep-main'\n"
    + LC_LINES
    + "neon.compute_mode=primary\n"
    + "neon.privileged_role_name='neon_superuser'\n"
    + "neon.extension_server_port=55434\n"
    + "neon.disable_logical_replication_subscribers=false\n"
    + "include_if_exists = 'compute_ctl_temp_override.conf'\n"
)


def test_example_8_1_exact() -> None:
    config = load_compute_config(json.dumps(EXAMPLE_8_1))
    assert config.spec is not None
    options = ConfOptions(extension_server_port=55434, tls=config.compute_ctl_config.tls)
    pageservers = postgres_pageservers(config.spec)
    assert render_postgresql_conf(config.spec, options, pageservers) == EXPECTED_8_1


def test_example_8_1_subscribers_line_already_present() -> None:
    """After configure_as_primary the file is unchanged: the line is there already."""
    assert line_in_file(EXPECTED_8_1, SUBSCRIBERS_ENABLED_LINE) == (EXPECTED_8_1, False)


def sharded_8_2(prefer: str = "grpc") -> ComputeSpec:
    return make_spec(
        pageserver_connection_info={
            "shard_count": 2,
            "stripe_size": 2048,
            "shards": {
                "0002": shard(
                    "postgres://no_user@localhost:15000", "grpc://no_user@localhost:15002", 1
                ),
                "0102": shard(
                    "postgres://no_user@localhost:15010", "grpc://no_user@localhost:15012", 2
                ),
            },
            "prefer_protocol": prefer,
        },
        pageserver_connstring=(
            "postgres://no_user@localhost:15000,postgres://no_user@localhost:15010"
        ),
        shard_stripe_size=2048,
    )


def test_example_8_2_sharded_block() -> None:
    text = render(sharded_8_2())
    assert neon_block(text) == (
        "# from compute spec's pageserver_connection_info.stripe_size field\n"
        "neon.stripe_size=2048\n"
        "# derived from compute spec's pageserver_connection_info field\n"
        "neon.pageserver_connstring="
        "'postgres://no_user@localhost:15000,postgres://no_user@localhost:15010'\n"
    )
    assert "grpc://" not in text
    assert "15002" not in text


def test_prefer_protocol_does_not_change_the_file() -> None:
    assert render(sharded_8_2("grpc")) == render(sharded_8_2("libpq"))


# --------------------------------------------------------------------------------------------
# Layout, item by item


def test_minimal_spec_exact() -> None:
    assert render(make_spec()) == (
        "# Neon storage settings\n"
        "\n"
        + LC_LINES
        + "neon.compute_mode=primary\n"
        + "neon.privileged_role_name='neon_superuser'\n"
        + TAIL
    )


@pytest.mark.parametrize(
    ("conf", "head"),
    [
        ("a=1", "a=1\n# Neon storage settings\n"),
        ("a=1\n", "a=1\n\n# Neon storage settings\n"),
        ("", "\n# Neon storage settings\n"),
    ],
)
def test_postgresql_conf_verbatim_then_newline(conf: str, head: str) -> None:
    assert render(make_spec(cluster={"postgresql_conf": conf})).startswith(head)


def test_shards_written_in_shard_order_not_map_order() -> None:
    spec = make_spec(
        pageserver_connection_info=conninfo(
            3,
            8,
            {"0203": shard("postgres://c"), "0003": shard("postgres://a"), "0103": shard("b=1")},
        )
    )
    assert pageserver_connstring_for_postgres(spec) == "postgres://a,b=1,postgres://c"
    assert "neon.pageserver_connstring='postgres://a,b=1,postgres://c'\n" in render(spec)


def test_only_the_first_pageserver_of_a_shard_is_used() -> None:
    info = conninfo(0, None, {"0000": shard("postgres://first")})
    info["shards"]["0000"]["pageservers"].append({"id": 2, "libpq_url": "postgres://second"})
    assert pageserver_connstring_for_postgres(make_spec(pageserver_connection_info=info)) == (
        "postgres://first"
    )


def test_shard_without_libpq_url_means_no_connstring() -> None:
    spec = make_spec(
        pageserver_connection_info=conninfo(
            2, 16, {"0002": shard("postgres://a"), "0102": shard(None, "grpc://b")}
        )
    )
    assert pageserver_connstring_for_postgres(spec) is None
    assert neon_block(render(spec)) == (
        "# from compute spec's pageserver_connection_info.stripe_size field\n"
        "neon.stripe_size=16\n"
        "# no neon.pageserver_connstring\n"
    )


def test_stripe_written_even_for_unsharded_conninfo() -> None:
    """The "stripe null iff unsharded" invariant is not enforced; the file shows what it got."""
    spec = make_spec(pageserver_connection_info=conninfo(0, 2048, {"0000": shard("p")}))
    assert neon_block(render(spec)) == (
        "# from compute spec's pageserver_connection_info.stripe_size field\n"
        "neon.stripe_size=2048\n"
        "# derived from compute spec's pageserver_connection_info field\n"
        "neon.pageserver_connstring='p'\n"
    )


def test_conninfo_wins_over_legacy_fields() -> None:
    spec = make_spec(
        pageserver_connection_info=conninfo(0, None, {"0000": shard("postgres://new")}),
        pageserver_connstring="postgres://old",
        shard_stripe_size=4096,
    )
    block = neon_block(render(spec))
    assert "postgres://old" not in block
    assert "4096" not in block
    assert pageserver_connstring_for_postgres(spec) == "postgres://new"


def test_legacy_connstring_and_stripe_block() -> None:
    spec = make_spec(pageserver_connstring="host=ps port=6400 it's", shard_stripe_size=32768)
    assert neon_block(render(spec)) == (
        "# from compute spec's shard_stripe_size field\n"
        "neon.stripe_size=32768\n"
        "# from compute spec's pageserver_connstring field\n"
        "neon.pageserver_connstring='host=ps port=6400 it''s'\n"
    )
    assert pageserver_connstring_for_postgres(spec) == "host=ps port=6400 it's"


def test_legacy_fields_alone() -> None:
    only_stripe = make_spec(shard_stripe_size=8)
    assert neon_block(render(only_stripe)) == (
        "# from compute spec's shard_stripe_size field\nneon.stripe_size=8\n"
    )
    assert pageserver_connstring_for_postgres(only_stripe) is None
    only_connstring = make_spec(pageserver_connstring="postgres://p")
    assert neon_block(render(only_connstring)) == (
        "# from compute spec's pageserver_connstring field\n"
        "neon.pageserver_connstring='postgres://p'\n"
    )


@pytest.mark.parametrize(
    ("info", "missing"),
    [
        (conninfo(2, None, {}), "0002"),
        (conninfo(2, 8, {"0002": shard("a")}), "0102"),
        (conninfo(1, None, {"0000": shard("a")}), "0001"),
        (conninfo(0, None, {"0001": shard("a")}), "0000"),
    ],
)
def test_missing_shard_is_an_error(info: dict[str, Any], missing: str) -> None:
    spec = make_spec(pageserver_connection_info=info)
    message = f"shard {missing} missing from pageserver_connection_info shard map"
    with pytest.raises(SpecError) as excinfo:
        render(spec)
    assert str(excinfo.value) == message
    with pytest.raises(SpecError):
        pageserver_connstring_for_postgres(spec)


def test_empty_pageservers_is_an_error_naming_the_shard() -> None:
    spec = make_spec(
        pageserver_connection_info=conninfo(2, 8, {"0002": shard("a"), "0102": {"pageservers": []}})
    )
    with pytest.raises(SpecError, match="must have at least one pageserver") as excinfo:
        render(spec)
    assert "shard 0102" in str(excinfo.value)


def test_missing_shard_reported_even_when_urls_lack() -> None:
    spec = make_spec(pageserver_connection_info=conninfo(2, 8, {"0002": shard(None, "g")}))
    with pytest.raises(SpecError, match="shard 0102 missing"):
        render(spec)


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"safekeeper_connstrings": ["a:1", "b:2"]}, "neon.safekeepers='a:1,b:2'\n"),
        (
            {"safekeeper_connstrings": ["a:1", "b:2"], "safekeepers_generation": 7},
            "neon.safekeepers='g#7:a:1,b:2'\n",
        ),
        (
            {"safekeeper_connstrings": ["a:1"], "safekeepers_generation": 0},
            "neon.safekeepers='g#0:a:1'\n",
        ),
    ],
)
def test_safekeepers_line(fields: dict[str, Any], line: str) -> None:
    assert neon_block(render(make_spec(**fields))) == line


def test_no_safekeepers_line_when_list_empty() -> None:
    spec = make_spec(safekeepers_generation=3, cluster={"settings": []})
    assert "neon.safekeepers" not in render(spec)


def test_ids_in_order_and_escaped() -> None:
    spec = make_spec(
        endpoint_id="ep-'x'",
        branch_id="br-1",
        project_id="proj\\1",
        timeline_id=TIMELINE.upper(),
        tenant_id=TENANT,
    )
    assert neon_block(render(spec)) == (
        f"neon.tenant_id='{TENANT}'\n"
        f"neon.timeline_id='{TIMELINE}'\n"
        "neon.project_id='proj\\\\1'\n"
        "neon.branch_id='br-1'\n"
        "neon.endpoint_id='ep-''x'''\n"
    )


TLS = TlsConfig(key_path="/certs/tls.key", cert_path="/certs/tls.crt")
TLS_LINES = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"


def test_tls_lines_need_feature_and_config() -> None:
    with_feature = make_spec(features=["tls_experimental"])
    assert (TLS_LINES + LC_LINES) in render(with_feature, tls=TLS)
    assert "ssl" not in render(with_feature)
    assert "ssl" not in render(make_spec(features=["other"]), tls=TLS)


def test_lc_value() -> None:
    text = render(make_spec(), lc_value="C")
    assert "lc_messages='C'\nlc_monetary='C'\nlc_time='C'\nlc_numeric='C'\n" in text
    assert "UTF-8" not in text


@pytest.mark.parametrize(
    ("mode", "lines"),
    [
        ("Primary", "neon.compute_mode=primary\n"),
        ("Replica", "neon.compute_mode=replica\nhot_standby=on\n"),
        (
            {"Static": "0/16B5A50"},
            "neon.compute_mode=static\nhot_standby=on\nrecovery_target_lsn='0/16B5A50'\n",
        ),
    ],
)
def test_mode_lines(mode: Any, lines: str) -> None:
    text = render(make_spec(mode=mode))
    assert LC_LINES + lines + "neon.privileged_role_name=" in text
    assert "primary_conninfo" not in text


def test_overcommit_line() -> None:
    text = render(make_spec(mode="Replica"), overcommit_never=True)
    assert "hot_standby=on\ndynamic_shared_memory_type = mmap\nneon.privileged_role_name" in text
    assert "dynamic_shared_memory_type" not in render(make_spec())


def test_privileged_role_name() -> None:
    text = render(make_spec(), privileged_role_name="databricks_superuser")
    assert "neon.privileged_role_name='databricks_superuser'\n" in text


def test_extension_port_subscribers_and_logs_export() -> None:
    spec = make_spec(drop_subscriptions_before_start=True, logs_export_host="collector:514")
    text = render(spec, extension_server_port=9999)
    assert text.endswith(
        "neon.extension_server_port=9999\n"
        "neon.disable_logical_replication_subscribers=true\n"
        "log_destination='stderr,syslog'\n"
        "include_if_exists = 'compute_ctl_temp_override.conf'\n"
    )
    # Nothing in the logs export line depends on the host.
    assert "collector" not in text


DATABRICKS = {
    "pg_compute_tls_settings": {
        "cert_file": "/tls/server.crt",
        "key_file": "/tls/server.key",
        "ca_file": "/tls/ca.crt",
    },
    "databricks_pg_hba": "/databricks/pg_hba.conf",
    "databricks_pg_ident": "/databricks/pg_ident.conf",
    "databricks_workspace_host": "dbc-123.cloud.databricks.com",
}


def test_lakebase_block() -> None:
    text = render(make_spec(databricks_settings=DATABRICKS), lakebase_port=5432)
    assert text.endswith(
        "neon.disable_logical_replication_subscribers=false\n"
        "port = 5432\n"
        "# Databricks settings start\n"
        "ssl_ca_file = '/tls/ca.crt'\n"
        "databricks.workspace_url = 'dbc-123.cloud.databricks.com'\n"
        "databricks.enable_databricks_identity_login = true\n"
        "databricks.enable_sql_restrictions = true\n"
        "\n"
        "# Databricks settings end\n"
        "include_if_exists = 'compute_ctl_temp_override.conf'\n"
    )


def test_lakebase_block_without_settings() -> None:
    text = render(make_spec(), lakebase_port=6000)
    assert text.endswith(
        "neon.disable_logical_replication_subscribers=false\n"
        "port = 6000\n"
        "# Databricks settings start\n"
        "# Databricks settings end\n"
        "include_if_exists = 'compute_ctl_temp_override.conf'\n"
    )


def test_databricks_settings_ignored_outside_lakebase_mode() -> None:
    text = render(make_spec(databricks_settings=DATABRICKS))
    assert "Databricks" not in text
    assert "port = " not in text


def test_everything_in_order() -> None:
    spec = make_spec(
        features=["tls_experimental"],
        cluster={
            "postgresql_conf": "shared_preload_libraries='neon'",
            "settings": [
                {"name": "shared_preload_libraries", "value": "neon,pg_stat", "vartype": "string"},
                {"name": "work_mem", "value": "4MB", "vartype": "integer"},
            ],
        },
        tenant_id=TENANT,
        timeline_id=TIMELINE,
        pageserver_connection_info=conninfo(
            2, 2048, {"0002": shard("postgres://p0"), "0102": shard("postgres://p1")}
        ),
        project_id="proj",
        branch_id="br",
        endpoint_id="ep",
        safekeepers_generation=2,
        safekeeper_connstrings=["sk1:5454", "sk2:5454"],
        mode={"Static": "1/A"},
        drop_subscriptions_before_start=True,
        audit_log_level="Full",
        logs_export_host="h",
        databricks_settings=DATABRICKS,
    )
    options = ConfOptions(
        privileged_role_name="su",
        extension_server_port=1234,
        tls=TLS,
        overcommit_never=True,
        lc_value="C",
        lakebase_port=7777,
    )
    assert render_postgresql_conf(spec, options, postgres_pageservers(spec)) == (
        "shared_preload_libraries='neon'\n"
        "# Neon storage settings\n"
        "\n"
        "# from compute spec's pageserver_connection_info.stripe_size field\n"
        "neon.stripe_size=2048\n"
        "# derived from compute spec's pageserver_connection_info field\n"
        "neon.pageserver_connstring='postgres://p0,postgres://p1'\n"
        "neon.safekeepers='g#2:sk1:5454,sk2:5454'\n"
        f"neon.tenant_id='{TENANT}'\n"
        f"neon.timeline_id='{TIMELINE}'\n"
        "neon.project_id='proj'\n"
        "neon.branch_id='br'\n"
        "neon.endpoint_id='ep'\n"
        "ssl = on\n"
        "ssl_cert_file = 'server.crt'\n"
        "ssl_key_file = 'server.key'\n"
        "lc_messages='C'\n"
        "lc_monetary='C'\n"
        "lc_time='C'\n"
        "lc_numeric='C'\n"
        "neon.compute_mode=static\n"
        "hot_standby=on\n"
        "recovery_target_lsn='1/A'\n"
        "dynamic_shared_memory_type = mmap\n"
        "neon.privileged_role_name='su'\n"
        "# Managed by compute_ctl: begin\n"
        "shared_preload_libraries = 'neon,pg_stat'\n"
        "work_mem = 4MB\n"
        "# Managed by compute_ctl: end\n"
        "# Managed by compute_ctl compliance audit settings: begin\n"
        "pgaudit.log_parameter=on\n"
        "pgaudit.log='all'\n"
        "pgaudit.log_catalog=off\n"
        "pgaudit.log_rotation_age=5\n"
        "shared_preload_libraries='neon,pg_stat,pgaudit,pgauditlogtofile'\n"
        "# Managed by compute_ctl compliance audit settings: end\n"
        "neon.extension_server_port=1234\n"
        "neon.disable_logical_replication_subscribers=true\n"
        "log_destination='stderr,syslog'\n"
        "port = 7777\n"
        "# Databricks settings start\n"
        "ssl_ca_file = '/tls/ca.crt'\n"
        "databricks.workspace_url = 'dbc-123.cloud.databricks.com'\n"
        "databricks.enable_databricks_identity_login = true\n"
        "databricks.enable_sql_restrictions = true\n"
        "\n"
        "# Databricks settings end\n"
        "include_if_exists = 'compute_ctl_temp_override.conf'\n"
    )


def test_every_line_ends_with_newline() -> None:
    assert render(make_spec(cluster={"settings": []})).endswith("\n")
    assert render(fixture_spec()).endswith("'compute_ctl_temp_override.conf'\n")


# --------------------------------------------------------------------------------------------
# Audit


def settings_with_libs(libs: str | None) -> list[GenericOption] | None:
    if libs is None:
        return None
    return [GenericOption(name="shared_preload_libraries", value=libs, vartype="string")]


def base_block(libs: str) -> str:
    return (
        "# Managed by compute_ctl base audit settings: start\n"
        "pgaudit.log='ddl,role'\n"
        "pgaudit.log_catalog=off\n"
        f"shared_preload_libraries='{libs}'\n"
        "# Managed by compute_ctl base audit settings: end\n"
    )


def compliance_block(full: bool, libs: str) -> str:
    parameter, log = ("on", "all") if full else ("off", "all, -misc")
    return (
        "# Managed by compute_ctl compliance audit settings: begin\n"
        f"pgaudit.log_parameter={parameter}\n"
        f"pgaudit.log='{log}'\n"
        "pgaudit.log_catalog=off\n"
        "pgaudit.log_rotation_age=5\n"
        f"shared_preload_libraries='{libs}'\n"
        "# Managed by compute_ctl compliance audit settings: end\n"
    )


@pytest.mark.parametrize("level", [ComputeAudit.LOG, ComputeAudit.BASE])
@pytest.mark.parametrize(
    ("libs", "merged"),
    [
        (None, "neon,pgaudit"),
        ("neon", "neon,pgaudit"),
        ("neon,pgaudit", "neon,pgaudit"),
        ("neon,pgauditlogtofile", "neon,pgauditlogtofile"),  # substring test, as upstream
        ("", ",pgaudit"),
    ],
)
def test_base_audit_block(level: ComputeAudit, libs: str | None, merged: str) -> None:
    assert render_audit_block(level, settings_with_libs(libs)) == base_block(merged)


@pytest.mark.parametrize(
    ("level", "full"),
    [(ComputeAudit.HIPAA, False), (ComputeAudit.EXTENDED, False), (ComputeAudit.FULL, True)],
)
@pytest.mark.parametrize(
    ("libs", "merged"),
    [
        (None, "neon,pgaudit,pgauditlogtofile"),
        ("neon", "neon,pgaudit,pgauditlogtofile"),
        ("neon,pgaudit", "neon,pgaudit,pgauditlogtofile"),
        ("neon,pgauditlogtofile", "neon,pgauditlogtofile"),
    ],
)
def test_compliance_audit_block(
    level: ComputeAudit, full: bool, libs: str | None, merged: str
) -> None:
    assert render_audit_block(level, settings_with_libs(libs)) == compliance_block(full, merged)


def test_audit_disabled_writes_nothing() -> None:
    assert render_audit_block(ComputeAudit.DISABLED, settings_with_libs("neon")) == ""
    assert "pgaudit" not in render(make_spec(audit_log_level="Disabled"))


def test_audit_null_library_value_counts_as_absent() -> None:
    settings = [GenericOption(name="shared_preload_libraries", value=None, vartype="string")]
    assert render_audit_block(ComputeAudit.BASE, settings) == base_block("neon,pgaudit")


def test_audit_ignores_postgresql_conf_libraries() -> None:
    spec = make_spec(
        audit_log_level="Base",
        cluster={"postgresql_conf": "shared_preload_libraries='neon,pgaudit,x'"},
    )
    text = render(spec)
    assert base_block("neon,pgaudit") in text


def test_audit_block_follows_settings() -> None:
    spec = make_spec(
        audit_log_level="Base", cluster={"settings": [{"name": "a", "value": "1", "vartype": "i"}]}
    )
    text = render(spec)
    assert "a = 1\n# Managed by compute_ctl: end\n" + base_block("neon,pgaudit") in text
    assert base_block("neon,pgaudit") + "neon.extension_server_port=3081\n" in text


def test_audit_block_without_settings_block() -> None:
    text = render(make_spec(audit_log_level="Extended"))
    expected = compliance_block(False, "neon,pgaudit,pgauditlogtofile")
    assert "neon.privileged_role_name='neon_superuser'\n" + expected in text


@pytest.mark.parametrize(
    ("level", "required"),
    [
        (ComputeAudit.DISABLED, False),
        (ComputeAudit.LOG, False),
        (ComputeAudit.BASE, False),
        (ComputeAudit.HIPAA, True),
        (ComputeAudit.EXTENDED, True),
        (ComputeAudit.FULL, True),
    ],
)
def test_audit_requires_endpoint(level: ComputeAudit, required: bool) -> None:
    assert audit_requires_endpoint(level) is required


# --------------------------------------------------------------------------------------------
# line_in_file

SAMPLE = "line1\nline2.1\t line2.2\nline3"


def test_line_in_file_upstream_expectations() -> None:
    assert line_in_file(SAMPLE, "line2.1\t line2.2") == (SAMPLE, False)
    assert line_in_file(SAMPLE, "line4") == ("line1\nline2.1\t line2.2\nline3\nline4", True)
    assert line_in_file(None, "line4") == ("line4", True)


def test_line_in_file_trailing_newline_leaves_blank_line() -> None:
    hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
    new, changed = line_in_file(hba, PG_HBA_MD5_LINE)
    assert changed
    assert new == hba + "\nhost\tall\t\tall\t\tall\t\tmd5"
    # A second run finds it and changes nothing.
    assert line_in_file(new, PG_HBA_MD5_LINE) == (new, False)


def test_line_in_file_empty_file_and_crlf() -> None:
    assert line_in_file("", "x") == ("x", True)
    assert line_in_file("a\r\nx\r\n", "x") == ("a\r\nx\r\n", False)
    # A "\r" without a following newline is part of the line.
    assert line_in_file("x\r", "x") == ("x\r\nx", True)


def test_line_in_file_line_with_newline_never_matches() -> None:
    """The Databricks include lines carry a trailing newline and are appended every time."""
    text, _ = line_in_file("a", "include_if_exists /x\n")
    again, changed = line_in_file(text, "include_if_exists /x\n")
    assert changed
    assert again == "a\ninclude_if_exists /x\n\ninclude_if_exists /x\n"


def test_line_in_file_empty_line() -> None:
    # No empty line after a final newline counts, but a real blank line does.
    assert line_in_file("a\n", "") == ("a\n\n", True)
    assert line_in_file("a\n\nb", "") == ("a\n\nb", False)


def test_line_in_file_path(tmp_path: Path) -> None:
    path = tmp_path / "pg_hba.conf"
    assert line_in_file_path(path, "line4")
    assert path.read_bytes() == b"line4"
    assert not line_in_file_path(path, "line4")
    path.write_bytes(b"a\r\nb\n")
    assert line_in_file_path(path, "c")
    assert path.read_bytes() == b"a\r\nb\n\nc"
    assert not line_in_file_path(path, "a")
