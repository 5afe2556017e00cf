"""`GET /autoscaling_metrics`: the Postgres communicator's metrics, proxied.

This route forwards `GET /autoscaling_metrics` to the communicator (`postgres/communicator.py`)
and answers with its status, `Content-Type` and body. Stock PostgreSQL has no communicator: the
route then answers 500.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error
from compute_ctl.postgres.communicator import CommunicatorError, autoscaling_metrics

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_autoscaling_metrics(request: Request, compute: ComputeApi) -> Response:
    """The communicator's autoscaling metrics, forwarded as they are.

    200 (or whatever the communicator answers): its body and `Content-Type`.
    500: the communicator cannot be reached (its socket is missing: stock PostgreSQL has
    none) or does not answer HTTP.
    """
    try:
        proxied = await autoscaling_metrics(compute.params.pgdata)
    except CommunicatorError as exc:
        return json_error(f"failed to get autoscaling metrics: {exc}", 500)
    headers = {"Content-Type": proxied.content_type} if proxied.content_type else None
    return Response(proxied.body, status_code=proxied.status, headers=headers)
