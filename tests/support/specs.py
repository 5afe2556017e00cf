"""Small builders for spec documents used across tests."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support.paths import FIXTURES

TENANT = "1f359dd625e519a1a4e8d7509690f6fc"
TIMELINE = "de200bd42b49cc1814412c7e592dd6e9"


def minimal_spec(**fields: Any) -> dict[str, Any]:
    """The smallest spec upstream accepts, plus `fields`."""
    spec: dict[str, Any] = {
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
        "suspend_timeout_seconds": -1,
    }
    spec.update(fields)
    return spec


def storage_spec(**fields: Any) -> dict[str, Any]:
    """A resolvable primary: one libpq pageserver, one safekeeper, explicit ids."""
    base = minimal_spec(
        tenant_id=TENANT,
        timeline_id=TIMELINE,
        pageserver_connstring="postgres://no_user@ps:64000",
        safekeeper_connstrings=["127.0.0.1:5454"],
    )
    base.update(fields)
    return base


def settings(**values: str | None) -> list[dict[str, Any]]:
    return [
        {"name": k.replace("__", "."), "value": v, "vartype": "string"} for k, v in values.items()
    ]


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return copy.deepcopy(data)
