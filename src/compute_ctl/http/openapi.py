"""The OpenAPI document of one listener, generated from its route table and models.

Schemas come from the pydantic models the handlers use (JSON Schema 2020-12, hence OpenAPI
3.1); named models are collected under `components.schemas`. Authenticated operations carry
the bearer-JWT security requirement, the others an empty one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter

from compute_ctl import __version__
from compute_ctl.http.api import ApiRoute, Reply, with_auth_errors

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "JWT"
# Starlette's `{name:converter}` path parameters; OpenAPI writes them `{name}`.
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


def openapi_path(path: str) -> str:
    """A route path as OpenAPI writes it: `/extension_server/{filename:anypath}` →
    `/extension_server/{filename}`."""
    return _PATH_PARAMETER.sub(r"{\1}", path)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(path)
    ]


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def of(self, schema_type: Any, mode: str) -> dict[str, Any]:
        """A schema for `schema_type`; named models become references into components."""
        if isinstance(schema_type, type) and issubclass(schema_type, BaseModel):
            schema = schema_type.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)  # type: ignore[arg-type]
            self.components.update(schema.pop("$defs", {}))
            self.components[schema_type.__name__] = schema
            return {"$ref": REF_TEMPLATE.format(model=schema_type.__name__)}
        schema = TypeAdapter(schema_type).json_schema(ref_template=REF_TEMPLATE, mode=mode)  # type: ignore[arg-type]
        self.components.update(schema.pop("$defs", {}))
        return schema


def _query_parameters(query: Any) -> list[dict[str, Any]]:
    if query is None:
        return []
    assert issubclass(query, BaseModel)
    parameters = []
    properties = query.model_json_schema()["properties"]
    for name, field in query.model_fields.items():
        # The model's own schema of the field keeps its constraints (a `Name`'s length).
        param_schema = {k: v for k, v in properties[name].items() if k != "title"}
        if not field.is_required():
            param_schema["default"] = field.default
        parameters.append(
            {"name": name, "in": "query", "required": field.is_required(), "schema": param_schema}
        )
    return parameters


def _response(reply: Reply, schemas: _Schemas) -> dict[str, Any]:
    response: dict[str, Any] = {"description": reply.description}
    if reply.media_type is not None:
        schema = (
            schemas.of(reply.schema, "serialization")
            if reply.schema is not None
            else {"type": "string"}
        )
        response["content"] = {reply.media_type: {"schema": schema}}
    return response


def _responses(route: ApiRoute, schemas: _Schemas) -> dict[str, Any]:
    """Each status once; two replies of one status (a JSON error or a plain-text rejection)
    are one response with both media types."""
    responses: dict[str, Any] = {}
    for reply in with_auth_errors(route):
        response = _response(reply, schemas)
        known = responses.get(str(reply.status))
        if known is None:
            responses[str(reply.status)] = response
            continue
        known["description"] += f"; {response['description']}"
        known.setdefault("content", {}).update(response.get("content", {}))
    return responses


def _operation(route: ApiRoute, schemas: _Schemas) -> dict[str, Any]:
    doc = (route.handler.__doc__ or "").strip()
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "description": doc,
        "security": [{SECURITY_SCHEME: []}] if route.auth else [],
        "responses": _responses(route, schemas),
    }
    parameters = _path_parameters(route.path) + _query_parameters(route.query)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.of(route.body, "validation")}},
        }
    return operation


def openapi_document(routes: Sequence[ApiRoute], title: str) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(
            route, schemas
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
