"""`GET /autoscaling_metrics`: the Postgres communicator's metrics, proxied.

This route forwards `GET /autoscaling_metrics` to the communicator (`postgres/communicator.py`)
and answers with its status, `Content-Type` and body. Stock PostgreSQL has no communicator: the
route then answers 412 and says what is missing, as routes do when the compute lacks what they
need (the communicator not running is a fact of this compute, not a failure of compute_ctl).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error
from compute_ctl.postgres.communicator import (
    CommunicatorError,
    CommunicatorFailure,
    autoscaling_metrics,
)

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

STATUS = {
    CommunicatorFailure.NOT_RUNNING: 412,
    CommunicatorFailure.BAD_ANSWER: 502,
    CommunicatorFailure.TIMEOUT: 504,
}


async def get_autoscaling_metrics(request: Request, compute: ComputeApi) -> Response:
    """The communicator's autoscaling metrics, forwarded as they are.

    200 (or whatever the communicator answers): its body and `Content-Type`.
    412: the communicator is not running: its socket `<pgdata>/neon-communicator.socket` does
    not exist (stock PostgreSQL has none) or nothing listens on it (`failed to get autoscaling
    metrics: the communicator socket <path> does not exist (the neon extension's communicator
    is not running)`).
    502: the communicator's socket cannot be used, or its answer is not HTTP.
    504: the communicator did not answer within 10 s.
    """
    try:
        proxied = await autoscaling_metrics(compute.params.pgdata)
    except CommunicatorError as exc:
        return json_error(f"failed to get autoscaling metrics: {exc}", STATUS[exc.failure])
    headers = {"Content-Type": proxied.content_type} if proxied.content_type else None
    return Response(proxied.body, status_code=proxied.status, headers=headers)
