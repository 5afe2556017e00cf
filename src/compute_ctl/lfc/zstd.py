"""zstd frames of the LFC state (imported where used: off the start-up path)."""

from __future__ import annotations


def compress(data: bytes) -> bytes:
    """One zstd frame at the default level (3), as upstream's encoder writes."""
    import zstandard  # noqa: PLC0415 - only offload needs it

    return zstandard.ZstdCompressor().compress(data)


def decompress(data: bytes) -> bytes:
    """One zstd frame, with or without its content size in the header. Truncated or
    corrupt input is an error (ValueError)."""
    import zstandard  # noqa: PLC0415 - only prewarm needs it

    decoder = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = decoder.decompress(data)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from None
    if not decoder.eof:
        raise ValueError("unexpected end of file: the zstd frame is incomplete")
    return out
