"""What the declared floors in pyproject.toml stand for, where the unit tests do not reach it
otherwise: `make lowest` runs these with the lowest allowed versions, so a floor set too low
fails here."""

from __future__ import annotations

import uvicorn.config


def test_uvicorn_has_the_sansio_websockets_the_vm_monitor_serves_with() -> None:
    # compute_ctl/vm_monitor/server.py: uvicorn.Config(ws="websockets-sansio"), uvicorn 0.35.
    assert "websockets-sansio" in uvicorn.config.WS_PROTOCOLS
