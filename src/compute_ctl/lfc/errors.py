"""What a failed LFC prewarm or offload reports (the `error` of its state)."""

from __future__ import annotations

from compute_ctl.errors import ComputeError

NO_SPEC = "the compute has no spec"


class LfcError(ComputeError):
    """A prewarm or offload step failed; the text is what the state's `error` shows."""


def error_with_context(what: str, exc: BaseException) -> LfcError:
    """`<what>: <cause>`, the way upstream prints an error with its context."""
    from compute_ctl.postgres.connect import pg_error_text  # noqa: PLC0415 - psycopg is heavy

    return LfcError(f"{what}: {pg_error_text(exc)}")
