"""Yes/no switches read from the environment (`COMPUTE_CTL_TESTING`,
`COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY`): one spelling of "on" for all of them."""

from __future__ import annotations

from collections.abc import Mapping

_ON = frozenset({"1", "true", "yes", "on"})


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """Whether `name` is set to 1, true, yes or on (any case, surrounding blanks ignored)."""
    return environ.get(name, "").strip().lower() in _ON
