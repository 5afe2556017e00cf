"""The `postgresql.conf` compute_ctl writes, rendered as text by pure functions.

The file is rewritten in full at every start and reconfigure, and Postgres lets a later line win
over an earlier one. The order of the blocks is therefore the contract: the control plane's raw
`postgresql_conf` first, then what compute_ctl derives from the spec (storage addresses, ids,
mode), then the spec's `settings` (which may override the derived lines), then the audit block
(which must override the settings), and finally the include of the temporary override file that
catalog updates use to lift limits for a moment.

Everything outside the spec that influences the text (command-line flags, the TLS config, what
`/proc/sys/vm/overcommit_memory` says, lakebase mode) arrives in `ConfOptions`, so rendering has
no I/O and no environment reads and can be tested byte for byte. The renderer works on the raw
spec, except for the pageservers: their lines come from `PostgresPageservers`, which resolution
derives from the spec's own fields (`ParsedSpec.postgres_pageservers`). Values that resolution
finds through GUC fallbacks reach Postgres through the settings block, not a second time through
the Neon block.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from compute_ctl.postgres.quoting import escape_conf_value
from compute_ctl.spec.models import (
    ComputeAudit,
    ComputeFeature,
    ComputeSpec,
    DatabricksSettings,
    GenericOption,
    GenericOptions,
    TlsConfig,
    find_option,
)
from compute_ctl.spec.resolve import PostgresPageservers

TEMP_OVERRIDE_FILE = "compute_ctl_temp_override.conf"
"""Included last by `postgresql.conf`; holds `TEMP_OVERRIDE_SETTINGS` during catalog updates."""

TEMP_OVERRIDE_SETTINGS = "neon.max_cluster_size=-1"
"""Content of the temporary override file (no newline), so catalog updates are not blocked by
the cluster size limit."""

PG_HBA_MD5_LINE = "host\tall\t\tall\t\tall\t\tmd5"
"""The line ensured in `pg_hba.conf` after the basebackup (one tab, then two-tab gaps)."""

SUBSCRIBERS_ENABLED_LINE = "neon.disable_logical_replication_subscribers=false"
"""Ensured in `postgresql.conf` after the first catalog update of a primary, so subscriptions
dropped-before-start are re-enabled once the catalog is in its final state."""

SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
"""Names, relative to PGDATA, under which the TLS certificate and key must be copied when the
rendered file turns `ssl` on."""


@dataclass(frozen=True)
class ConfOptions:
    """What the renderer needs that is not in the spec.

    `tls` is `compute_ctl_config.tls`; it only takes effect with the `tls_experimental` feature.
    `overcommit_never` is whether `/proc/sys/vm/overcommit_memory` reads `2` (the caller reads
    it, on Linux only). `lc_value` is the locale for the `lc_*` lines (`C` on macOS).
    `lakebase_port` is the port of `--connstr` in lakebase mode and None otherwise.
    """

    privileged_role_name: str = "neon_superuser"
    extension_server_port: int = 3081
    tls: TlsConfig | None = None
    overcommit_never: bool = False
    lc_value: str = "C.UTF-8"
    lakebase_port: int | None = None


# --------------------------------------------------------------------------------------------
# Settings (`cluster.settings`)


def render_setting(option: GenericOption) -> str:
    """One `cluster.settings` entry as a conf line (without newline).

    Only vartype `string` is quoted; other values are written verbatim, unvalidated, as
    upstream does. A null value yields the bare name, which Postgres rejects; we reproduce that
    rather than silently dropping a setting the control plane sent.
    """
    if option.value is None:
        return option.name
    if option.vartype == "string":
        return f"{option.name} = {escape_conf_value(option.value)}"
    return f"{option.name} = {option.value}"


def render_settings(options: GenericOptions) -> str:
    """All settings, one per line in input order (duplicates kept: the last one wins in
    Postgres), ending with a newline. An empty list gives a single newline; an absent list gives
    nothing."""
    if options is None:
        return ""
    return "\n".join(render_setting(option) for option in options) + "\n"


# --------------------------------------------------------------------------------------------
# Storage addresses


def _storage_lines(spec: ComputeSpec, pageservers: PostgresPageservers) -> Iterator[str]:
    # The stripe size comes before the connstring: the extension parses the shard map with the
    # stripe size in effect at the moment it reads the connstring.
    stripe, connstring = pageservers.stripe_size, pageservers.connstring
    if pageservers.from_conninfo:
        if stripe is not None:
            yield "# from compute spec's pageserver_connection_info.stripe_size field"
            yield f"neon.stripe_size={stripe}"
        if connstring is None:
            yield "# no neon.pageserver_connstring"
        else:
            yield "# derived from compute spec's pageserver_connection_info field"
            yield f"neon.pageserver_connstring={escape_conf_value(connstring)}"
    else:
        if stripe is not None:
            yield "# from compute spec's shard_stripe_size field"
            yield f"neon.stripe_size={stripe}"
        if connstring is not None:
            yield "# from compute spec's pageserver_connstring field"
            yield f"neon.pageserver_connstring={escape_conf_value(connstring)}"

    if spec.safekeeper_connstrings:
        # The membership generation travels as a prefix of the list; there is no separate GUC.
        generation = (
            f"g#{spec.safekeepers_generation}:" if spec.safekeepers_generation is not None else ""
        )
        safekeepers = generation + ",".join(spec.safekeeper_connstrings)
        yield f"neon.safekeepers={escape_conf_value(safekeepers)}"

    ids = (
        ("neon.tenant_id", spec.tenant_id),
        ("neon.timeline_id", spec.timeline_id),
        ("neon.project_id", spec.project_id),
        ("neon.branch_id", spec.branch_id),
        ("neon.endpoint_id", spec.endpoint_id),
    )
    for name, value in ids:
        if value is not None:
            yield f"{name}={escape_conf_value(value)}"


# --------------------------------------------------------------------------------------------
# Audit


_COMPLIANCE_LEVELS = frozenset({ComputeAudit.HIPAA, ComputeAudit.EXTENDED, ComputeAudit.FULL})
_BASE_LEVELS = frozenset({ComputeAudit.LOG, ComputeAudit.BASE})


def audit_requires_endpoint(level: ComputeAudit) -> bool:
    """Whether this level ships audit logs off the node, so start-up must find
    `AUDIT_LOGGING_ENDPOINT` or `AUDIT_LOGGING_TLS_ENDPOINT` in the environment (the caller
    checks; the renderer never reads the environment)."""
    return level in _COMPLIANCE_LEVELS


def _with_libraries(libs: str | None, required: tuple[str, ...]) -> str:
    # Upstream decides by substring tests, not by splitting the list: `pgauditlogtofile`
    # already satisfies `pgaudit`. Kept for identical output.
    if libs is None:
        return ",".join(("neon", *required))
    merged = libs
    for library in required:
        if library not in merged:
            merged += f",{library}"
    return merged


def _audit_lines(level: ComputeAudit, settings: GenericOptions) -> Iterator[str]:
    # The library list is merged from `cluster.settings` only (never from `postgresql_conf`),
    # and it is inserted unescaped, as upstream does.
    libs = find_option(settings, "shared_preload_libraries")
    if level in _BASE_LEVELS:
        yield "# Managed by compute_ctl base audit settings: start"
        yield "pgaudit.log='ddl,role'"
        yield "pgaudit.log_catalog=off"
        yield f"shared_preload_libraries='{_with_libraries(libs, ('pgaudit',))}'"
        yield "# Managed by compute_ctl base audit settings: end"
    elif level in _COMPLIANCE_LEVELS:
        # Note: "begin" here, "start" in the base block; both spellings are upstream's.
        yield "# Managed by compute_ctl compliance audit settings: begin"
        if level is ComputeAudit.FULL:
            yield "pgaudit.log_parameter=on"
            yield "pgaudit.log='all'"
        else:
            yield "pgaudit.log_parameter=off"
            yield "pgaudit.log='all, -misc'"
        yield "pgaudit.log_catalog=off"
        yield "pgaudit.log_rotation_age=5"
        merged = _with_libraries(libs, ("pgaudit", "pgauditlogtofile"))
        yield f"shared_preload_libraries='{merged}'"
        yield "# Managed by compute_ctl compliance audit settings: end"


def render_audit_block(level: ComputeAudit, settings: GenericOptions) -> str:
    """The audit lines for `level` (empty when disabled), each ending with a newline."""
    return "".join(f"{line}\n" for line in _audit_lines(level, settings))


# --------------------------------------------------------------------------------------------
# Lakebase


def _lakebase_lines(port: int, settings: DatabricksSettings | None) -> Iterator[str]:
    yield f"port = {port}"
    yield "# Databricks settings start"
    if settings is not None:
        # Upstream writes these values without escaping.
        yield f"ssl_ca_file = '{settings.pg_compute_tls_settings.ca_file}'"
        yield f"databricks.workspace_url = '{settings.databricks_workspace_host}'"
        yield "databricks.enable_databricks_identity_login = true"
        yield "databricks.enable_sql_restrictions = true"
        yield ""
    yield "# Databricks settings end"


# --------------------------------------------------------------------------------------------
# The whole file


def _conf_lines(
    spec: ComputeSpec, options: ConfOptions, pageservers: PostgresPageservers
) -> Iterator[str]:
    yield "# Neon storage settings"
    yield ""
    yield from _storage_lines(spec, pageservers)

    if options.tls is not None and spec.has_feature(ComputeFeature.TLS_EXPERIMENTAL):
        # The files are copied into PGDATA under these names by the caller.
        yield "ssl = on"
        yield f"ssl_cert_file = '{SERVER_CERT_FILE}'"
        yield f"ssl_key_file = '{SERVER_KEY_FILE}'"

    # Messages and formats must not depend on the image's locale: tools parse them.
    lc = escape_conf_value(options.lc_value)
    for name in ("lc_messages", "lc_monetary", "lc_time", "lc_numeric"):
        yield f"{name}={lc}"

    mode = spec.mode
    yield f"neon.compute_mode={mode.type_str()}"
    if mode.kind != "primary":
        # hot_standby defaults to on; it is written anyway so that a read-only compute accepts
        # connections even if `postgresql_conf` above said otherwise.
        yield "hot_standby=on"
    if mode.kind == "static":
        yield f"recovery_target_lsn='{mode.lsn}'"

    if options.overcommit_never:
        # Overcommit disabled is the control plane's sign that the VM runs with swap; dynamic
        # shared memory then uses mmap'd files rather than POSIX shared memory.
        yield "dynamic_shared_memory_type = mmap"

    yield f"neon.privileged_role_name={escape_conf_value(options.privileged_role_name)}"

    settings = spec.cluster.settings
    if settings is not None:
        yield "# Managed by compute_ctl: begin"
        # render_settings ends with a newline; the surrounding join supplies it for us.
        yield render_settings(settings)[:-1]
        yield "# Managed by compute_ctl: end"

    yield from _audit_lines(spec.audit_log_level, settings)

    yield f"neon.extension_server_port={options.extension_server_port}"
    disable = "true" if spec.drop_subscriptions_before_start else "false"
    yield f"neon.disable_logical_replication_subscribers={disable}"

    if spec.logs_export_host is not None:
        yield "log_destination='stderr,syslog'"

    if options.lakebase_port is not None:
        yield from _lakebase_lines(options.lakebase_port, spec.databricks_settings)

    # Last, so that the temporary override wins over everything above.
    yield f"include_if_exists = {escape_conf_value(TEMP_OVERRIDE_FILE)}"


def render_postgresql_conf(
    spec: ComputeSpec, options: ConfOptions, pageservers: PostgresPageservers
) -> str:
    """The complete `postgresql.conf` for `spec`, every line ending with a newline.

    `pageservers` is what resolution derived from the same spec (`ParsedSpec.postgres_pageservers`
    or `postgres_pageservers(spec)`); a shard map it cannot be written from was refused there.
    """
    head = ""
    if spec.cluster.postgresql_conf is not None:
        # Verbatim, plus a newline: a text that already ends with one leaves a blank line.
        head = spec.cluster.postgresql_conf + "\n"
    return head + "".join(f"{line}\n" for line in _conf_lines(spec, options, pageservers))


# --------------------------------------------------------------------------------------------
# line_in_file


def _file_lines(text: str) -> list[str]:
    # Lines as Rust's BufRead::lines() yields them: split on "\n", drop "\r" only when it came
    # right before a "\n", and no empty line after a final newline.
    pieces = text.split("\n")
    tail = pieces.pop()
    lines = [piece.removesuffix("\r") for piece in pieces]
    if tail:
        lines.append(tail)
    return lines


def line_in_file(text: str | None, line: str) -> tuple[str, bool]:
    """Ensure `line` is one of the lines of a file, given its content (None: no file).

    Returns the new content and whether it changed. The line is appended after a `\\n`
    separator when the file has any line, with no trailing newline; a file that ends with a
    newline therefore gets a blank line before it. This is upstream's exact behaviour, kept so
    that the files we produce are byte-identical. A missing file counts as changed even when
    `line` is empty (it gets created).
    """
    current = text or ""
    lines = _file_lines(current)
    if line in lines:
        return current, False
    separator = "\n" if lines else ""
    return current + separator + line, True


def line_in_file_path(path: Path, line: str) -> bool:
    """`line_in_file` on a real file: creates it if missing, appends only what is new.

    Reads and writes bytes-exact UTF-8 (no newline translation); invalid UTF-8 raises, as it
    does upstream.
    """
    try:
        text: str | None = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        text = None
    new_text, changed = line_in_file(text, line)
    if changed:
        suffix = new_text[len(text or "") :]
        with path.open("a", encoding="utf-8", newline="") as file:
            file.write(suffix)
    return changed


__all__ = [
    "PG_HBA_MD5_LINE",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "SUBSCRIBERS_ENABLED_LINE",
    "TEMP_OVERRIDE_FILE",
    "TEMP_OVERRIDE_SETTINGS",
    "ConfOptions",
    "audit_requires_endpoint",
    "line_in_file",
    "line_in_file_path",
    "render_audit_block",
    "render_postgresql_conf",
    "render_setting",
    "render_settings",
]
