"""The endpoint-storage stand-in run inside the test process, with helpers to put objects,
inject faults and hold requests in flight."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zstandard

from compute_dev.standins.endpoint_storage import serve

TOKEN = "endpoint-storage-token"
KEY = "lfc_state"


@dataclass
class EndpointStorage:
    root: Path
    addr: str
    token: str

    def path(self, tenant: str, timeline: str, endpoint: str) -> Path:
        return self.root / tenant / timeline / endpoint / KEY

    def put(self, tenant: str, timeline: str, endpoint: str, data: bytes) -> None:
        """Store `data` as it is (compress it first for a usable LFC state)."""
        target = self.path(tenant, timeline, endpoint)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, tenant: str, timeline: str, endpoint: str) -> bytes | None:
        target = self.path(tenant, timeline, endpoint)
        return target.read_bytes() if target.exists() else None

    def fail(self, tenant: str, timeline: str, endpoint: str, status: int | None) -> None:
        """Answer `status` for this object from now on (None: answer normally again)."""
        target = self.path(tenant, timeline, endpoint)
        marker = target.with_name(target.name + ".status")
        if status is None:
            marker.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(status))

    @contextmanager
    def held(self, tenant: str, timeline: str, endpoint: str) -> Iterator[None]:
        """Requests for this object wait until the block ends."""
        target = self.path(tenant, timeline, endpoint)
        target.parent.mkdir(parents=True, exist_ok=True)
        hold = target.with_name(target.name + ".hold")
        hold.touch()
        try:
            yield
        finally:
            hold.unlink(missing_ok=True)


@contextmanager
def running_endpoint_storage(token: str = TOKEN) -> Iterator[EndpointStorage]:
    root = Path(tempfile.mkdtemp(prefix="endpoint-storage-"))
    server = serve(root, "127.0.0.1", 0, token)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="endpoint-storage", daemon=True
    )
    thread.start()
    try:
        yield EndpointStorage(root, f"127.0.0.1:{server.server_address[1]}", token)
    finally:
        for hold in root.rglob("*.hold"):  # release anything still waiting
            hold.unlink(missing_ok=True)
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def zstd(data: bytes) -> bytes:
    """A zstd frame without its content size, as upstream's streaming encoder writes it."""
    compressor = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    return compressor.compress(data) + compressor.flush()


def unzstd(data: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().decompressobj()
    return reader.decompress(data)
