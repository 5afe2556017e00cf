"""The error hierarchy shared by every layer.

Each error says *what* failed (a spec field, a storage target, a catalog object) and *why*, and
keeps its cause chain. `chain_text` renders an error the way upstream's `/status` shows it
("outer\\n\\nCaused by:\\n    cause"), and `one_line` is what the command line prints.
"""

from __future__ import annotations

EXCERPT_CHARS = 32
"""How much of a rejected value an error may show: enough to find it, never all of it."""

MESSAGE_CHARS = 512
"""The most a spec error's field or problem text keeps, whatever went into it."""


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """A value for an error message: its escaped first `limit` characters, quoted as Python
    does (control characters, lone surrogates and other unprintables become escapes), with
    the full length when it was cut. A 50 MB name never comes back as a 50 MB message."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def _bounded(text: str) -> str:
    if len(text) <= MESSAGE_CHARS:
        return text
    return f"{text[:MESSAGE_CHARS]}… (cut, {len(text)} characters)"


class ComputeError(Exception):
    """Base of every error compute_ctl reports on purpose (anything else is a bug)."""

    def one_line(self) -> str:
        """The message and its causes, joined with ': ' (what the command line prints)."""
        parts = [str(self)]
        cause = self.__cause__
        while cause is not None:
            text = str(cause)
            if text and text not in parts[-1]:
                parts.append(text)
            cause = cause.__cause__
        return ": ".join(parts)


class SpecError(ComputeError):
    """A spec that cannot be used: names the field (a dotted JSON path) and the problem.

    `str()` is the problem alone, as upstream reports it (e.g. the 400 body of /configure);
    `one_line()` prefixes the field.
    """

    def __init__(self, field: str, problem: str) -> None:
        # Bounded, so that a problem text built from a huge value (a message of a validator
        # that quotes its input) is still one short line.
        problem = _bounded(problem)
        super().__init__(problem)
        self.field = _bounded(field)
        self.problem = problem

    def one_line(self) -> str:
        text = super().one_line()
        return f"{self.field}: {text}" if self.field else text


class ConfigError(ComputeError):
    """A configuration that is well-formed but cannot work (e.g. gRPC asked without a URL)."""


class StorageError(ComputeError):
    """A failure talking to the pageserver or the safekeepers."""

    def __init__(self, target: str, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.target = target
        self.transient = transient


class PostgresError(ComputeError):
    """Postgres could not be started, reached or stopped."""


class CatalogError(ComputeError):
    """A statement of spec application failed: which phase, which object, Postgres' message."""

    def __init__(self, phase: str, obj: str, message: str) -> None:
        super().__init__(f"{phase}: {obj}: {message}")
        self.phase = phase
        self.obj = obj
        self.message = message


class CatalogRefusalError(CatalogError):
    """Postgres refused a change because of what the request named: `missing` when the
    database, schema, role or extension named does not exist, else when a name or value is
    not one it accepts (no such extension version, a database that accepts no connections)."""

    def __init__(self, phase: str, obj: str, message: str, *, missing: bool) -> None:
        super().__init__(phase, obj, message)
        self.missing = missing


def chain_text(error: BaseException) -> str:
    """Render an error with its causes in upstream's `{:?}` anyhow form."""
    lines = [str(error)]
    causes: list[str] = []
    cause = error.__cause__
    while cause is not None:
        causes.append(str(cause))
        cause = cause.__cause__
    if causes:
        lines.append("")
        lines.append("Caused by:")
        if len(causes) == 1:
            lines.append(f"    {causes[0]}")
        else:
            lines.extend(f"    {i}: {c}" for i, c in enumerate(causes))
    return "\n".join(lines)
