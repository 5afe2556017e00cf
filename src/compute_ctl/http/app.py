"""The two Starlette apps (external and internal listener): their route tables and how a
route table becomes an app bound to one compute (serving them is `http/server.py`'s job)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.api import PROMETHEUS, TEXT, ApiRoute, Reply, error
from compute_ctl.http.auth import AllowAll, Authorizer
from compute_ctl.http.compute_api import ComputeApi
from compute_ctl.http.middleware import RequestIdMiddleware
from compute_ctl.http.routes.autoscaling_metrics import get_autoscaling_metrics
from compute_ctl.http.routes.check_writability import post_check_writability
from compute_ctl.http.routes.configure import post_configure
from compute_ctl.http.routes.database_schema import get_database_schema
from compute_ctl.http.routes.dbs_and_roles import get_dbs_and_roles
from compute_ctl.http.routes.extension_server import post_extension_server
from compute_ctl.http.routes.extensions import post_extensions
from compute_ctl.http.routes.failpoints import post_failpoints
from compute_ctl.http.routes.grants import post_grants
from compute_ctl.http.routes.insights import get_insights
from compute_ctl.http.routes.lfc_offload import get_lfc_offload, post_lfc_offload
from compute_ctl.http.routes.lfc_prewarm import (
    delete_lfc_prewarm,
    get_lfc_prewarm,
    post_lfc_prewarm,
)
from compute_ctl.http.routes.liveness import get_hadron_liveness_probe
from compute_ctl.http.routes.livez import get_livez
from compute_ctl.http.routes.metrics import get_metrics
from compute_ctl.http.routes.openapi import get_openapi
from compute_ctl.http.routes.promote import post_promote
from compute_ctl.http.routes.readyz import get_readyz
from compute_ctl.http.routes.refresh_configuration import post_refresh_configuration
from compute_ctl.http.routes.status import get_metrics_json, get_status
from compute_ctl.http.routes.terminate import post_terminate
from compute_ctl.http.schemas import (
    ComputeStatusResponse,
    ConfigureFailpointsRequest,
    DatabaseSchemaQuery,
    ExtensionInstallRequest,
    ExtensionInstallResult,
    ExtensionServerQuery,
    InsightsText,
    LfcPrewarmQuery,
    ProbeAnswer,
    PromoteRequest,
    SetRoleGrantsRequest,
    SetRoleGrantsResponse,
    TerminateQuery,
    TerminateResponse,
    WritabilityResult,
)
from compute_ctl.http.trace_middleware import TraceMiddleware
from compute_ctl.spec.models import ConfigurationRequest
from compute_ctl.spec.responses import (
    DbsAndRoles,
    LfcOffloadState,
    LfcPrewarmState,
    PromoteCompleted,
    PromoteFailed,
)
from compute_ctl.state import ComputeMetrics

log = logging.getLogger(__name__)


async def _empty_error(request: Request, exc: Exception) -> Response:
    """Unknown paths (404) and wrong methods (405) get an empty body, as upstream."""
    del request
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return Response(b"", status_code=status)


OPENAPI = ApiRoute(
    "GET", "/openapi.json", get_openapi, (Reply(200, "the OpenAPI document", dict[str, Any]),)
)

EXTERNAL_ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute(
        "GET",
        "/status",
        get_status,
        (Reply(200, "the compute's status", ComputeStatusResponse),),
        auth=True,
    ),
    ApiRoute(
        "GET",
        "/metrics.json",
        get_metrics_json,
        (Reply(200, "start-up timings and sizes", ComputeMetrics),),
        auth=True,
    ),
    ApiRoute(
        "GET",
        "/metrics",
        get_metrics,
        (Reply(200, "Prometheus metrics (text format 0.0.4)", None, PROMETHEUS),),
    ),
    ApiRoute(
        "GET",
        "/readyz",
        get_readyz,
        (
            Reply(200, "running: ready for traffic", ProbeAnswer),
            Reply(503, "any other status: not ready", ProbeAnswer),
        ),
    ),
    ApiRoute(
        "GET",
        "/livez",
        get_livez,
        (Reply(200, "compute_ctl serves, in every status", ProbeAnswer),),
    ),
    ApiRoute(
        "GET",
        "/autoscaling_metrics",
        get_autoscaling_metrics,
        (
            Reply(200, "the communicator's metrics, forwarded", None, TEXT),
            error(
                412,
                "the communicator is not running: its socket is missing (stock PostgreSQL) "
                "or nothing listens on it",
            ),
            error(502, "the communicator's socket cannot be used, or its answer is not HTTP"),
            error(504, "the communicator did not answer in time"),
        ),
    ),
    ApiRoute(
        "POST",
        "/configure",
        post_configure,
        (
            Reply(200, "the spec is applied; the compute's status", ComputeStatusResponse),
            error(400, "the body is not JSON, or the spec cannot be resolved"),
            error(412, "the compute is neither empty nor running"),
            error(415, "no `Content-Type: application/json`"),
            error(422, "the JSON is not a ConfigurationRequest"),
            error(500, "applying the spec failed"),
        ),
        auth=True,
        body=ConfigurationRequest,
    ),
    ApiRoute(
        "POST",
        "/terminate",
        post_terminate,
        (
            Reply(
                200,
                "terminated; the last flush LSN (lakebase, `empty`: an empty body, and the "
                "process exits 0 five seconds later)",
                TerminateResponse,
            ),
            Reply(201, "already terminated", TerminateResponse),
            Reply(400, "a bad query string (plain text)", None, "text/plain"),
            error(412, "the compute is neither empty nor running"),
        ),
        auth=True,
        query=TerminateQuery,
    ),
    ApiRoute(
        "POST",
        "/check_writability",
        post_check_writability,
        (
            Reply(200, "the compute can write", WritabilityResult),
            error(412, "the compute is not running"),
            error(500, "the write failed"),
        ),
        auth=True,
    ),
    ApiRoute(
        "GET",
        "/dbs_and_roles",
        get_dbs_and_roles,
        (
            Reply(200, "roles and databases", DbsAndRoles),
            error(500, "Postgres could not be read"),
        ),
        auth=True,
    ),
    ApiRoute(
        "GET",
        "/database_schema",
        get_database_schema,
        (
            # No media type here: the body is not JSON, whatever its label says.
            Reply(
                200,
                "the schema-only dump: SQL text, sent labelled `Content-Type: application/json` "
                "as upstream does",
                None,
                None,
            ),
            error(
                400,
                "the `database` query parameter is missing or not a name Postgres takes as it "
                "is, or the database does not accept connections",
            ),
            error(404, "the database does not exist"),
            Reply(499, "the client went away before the dump started (never sent)", None, None),
            error(500, "pg_dump failed"),
        ),
        auth=True,
        query=DatabaseSchemaQuery,
    ),
    ApiRoute(
        "GET",
        "/insights",
        get_insights,
        (
            Reply(200, "pg_stat_statements' top statements, as a JSON string", InsightsText),
            error(412, "the compute is not running"),
            error(500, "Postgres could not be reached"),
        ),
        auth=True,
    ),
    ApiRoute(
        "GET",
        "/lfc/prewarm",
        get_lfc_prewarm,
        (Reply(200, "the state of the last LFC prewarm", LfcPrewarmState),),
        auth=True,
    ),
    ApiRoute(
        "POST",
        "/lfc/prewarm",
        post_lfc_prewarm,
        (
            Reply(202, "the prewarm is started (empty body)", None, None),
            Reply(400, "a bad query string (plain text)", None, TEXT),
            error(429, "a prewarm is already running"),
        ),
        auth=True,
        query=LfcPrewarmQuery,
    ),
    ApiRoute(
        "DELETE",
        "/lfc/prewarm",
        delete_lfc_prewarm,
        (Reply(202, "cancellation requested (empty body)", None, None),),
        auth=True,
    ),
    ApiRoute(
        "GET",
        "/lfc/offload",
        get_lfc_offload,
        (Reply(200, "the state of the last LFC offload", LfcOffloadState),),
        auth=True,
    ),
    ApiRoute(
        "POST",
        "/lfc/offload",
        post_lfc_offload,
        (
            Reply(202, "the offload is started (empty body)", None, None),
            error(429, "an offload is already running"),
        ),
        auth=True,
    ),
    ApiRoute(
        "POST",
        "/promote",
        post_promote,
        (
            Reply(200, "promoted", PromoteCompleted),
            error(400, "the spec cannot be resolved"),
            Reply(400, "the body is not JSON (plain text)", None, TEXT),
            Reply(413, "the body is too large (plain text)", None, TEXT),
            Reply(415, "no `Content-Type: application/json` (plain text)", None, TEXT),
            Reply(422, "the JSON is not a PromoteRequest (plain text)", None, TEXT),
            Reply(500, "the promotion failed", PromoteFailed),
        ),
        auth=True,
        body=PromoteRequest,
    ),
    ApiRoute(
        "GET",
        "/hadron_liveness_probe",
        get_hadron_liveness_probe,
        (
            Reply(200, 'Postgres accepts connections: `"ok"`', str),
            error(500, "Postgres does not accept connections, or pg_isready could not run"),
        ),
        auth=True,
    ),
    OPENAPI,
)

INTERNAL_ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute(
        "POST",
        "/extension_server/{filename:anypath}",
        post_extension_server,
        (
            Reply(200, "installed, now or before (empty body)", None, None),
            error(400, "`is_library` is not `true` or `false`"),
            error(404, "no such extension or library (no file name: empty body)"),
            error(409, "the spec has no `remote_extensions`"),
            error(412, "no `--remote-ext-base-url`, or no spec yet"),
            error(500, "the download or the installation failed"),
        ),
        query=ExtensionServerQuery,
    ),
    ApiRoute(
        "POST",
        "/extensions",
        post_extensions,
        (
            Reply(201, "installed (or already at that version)", ExtensionInstallResult),
            error(
                400,
                "the body is not JSON, a name is not one Postgres takes as it is, Postgres "
                "refused the name or version, or the database accepts no connections",
            ),
            error(404, "the database does not exist, or the extension is not installed here"),
            error(412, "the compute is not running"),
            error(415, "no `Content-Type: application/json`"),
            error(422, "the body is not an ExtensionInstallRequest"),
            error(500, "Postgres could not be reached or failed otherwise"),
        ),
        body=ExtensionInstallRequest,
    ),
    ApiRoute(
        "POST",
        "/grants",
        post_grants,
        (
            Reply(201, "granted; the request echoed", SetRoleGrantsResponse),
            error(
                400,
                "the body is not JSON, a name is not one Postgres takes as it is, Postgres "
                "refused a name, or the database accepts no connections",
            ),
            error(404, "the database, the schema or the role does not exist"),
            error(412, "the compute is not running"),
            error(415, "no `Content-Type: application/json`"),
            error(422, "the body is not a SetRoleGrantsRequest"),
            error(500, "Postgres could not be reached or failed otherwise"),
        ),
        body=SetRoleGrantsRequest,
    ),
    ApiRoute(
        "POST",
        "/refresh_configuration",
        post_refresh_configuration,
        (
            Reply(200, "the refresh is signalled (empty body)", None, None),
            error(500, "the compute cannot refresh in its status"),
        ),
    ),
    ApiRoute(
        "POST",
        "/failpoints",
        post_failpoints,
        (
            Reply(200, "the failpoints are configured (empty body)", None, None),
            error(400, "the body is not JSON, or actions that cannot be parsed"),
            error(412, "not a testing build (no `COMPUTE_CTL_TESTING`)"),
            error(413, "the body is too large"),
            error(415, "no `Content-Type: application/json`"),
            error(422, "the body is not a list of FailpointConfig"),
        ),
        body=ConfigureFailpointsRequest,
    ),
    OPENAPI,
)


def _app(
    routes: tuple[ApiRoute, ...], compute: ComputeApi, authorizer: Authorizer, title: str
) -> Starlette:
    app = Starlette(
        routes=[route.route(compute, authorizer) for route in routes],
        middleware=[Middleware(RequestIdMiddleware), Middleware(TraceMiddleware)],
        exception_handlers={404: _empty_error, 405: _empty_error},
    )
    app.state.api_routes = routes
    app.state.api_title = title
    return app


def external_app(compute: ComputeApi, authorizer: Authorizer | None = None) -> Starlette:
    """Control plane, scrapers, probes and tests: JWT-authorized except /metrics, /readyz,
    /livez and /openapi.json."""
    return _app(EXTERNAL_ROUTES, compute, authorizer or AllowAll(), "compute_ctl external HTTP API")


def internal_app(compute: ComputeApi) -> Starlette:
    """Postgres' extension, local_proxy and tests: no authentication."""
    return _app(INTERNAL_ROUTES, compute, AllowAll(), "compute_ctl internal HTTP API")
