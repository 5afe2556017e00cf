"""LFC prewarm and offload: the local file cache's state, kept in endpoint storage.

The public face of the package; `cache.Lfc` holds the two state machines, the other modules
the pieces it is made of (endpoint storage requests, zstd frames, cancellation).
"""

from __future__ import annotations

from compute_ctl.lfc.cache import Lfc, maintenance_client, prewarm_display
from compute_ctl.lfc.cancel import CancelToken, TokenCancelledError, unless_cancelled
from compute_ctl.lfc.endpoint_storage import EndpointStorageObject, state_object
from compute_ctl.lfc.errors import NO_SPEC, LfcError
from compute_ctl.lfc.zstd import compress, decompress

__all__ = [
    "NO_SPEC",
    "CancelToken",
    "EndpointStorageObject",
    "Lfc",
    "LfcError",
    "TokenCancelledError",
    "compress",
    "decompress",
    "maintenance_client",
    "prewarm_display",
    "state_object",
    "unless_cancelled",
]
