"""What each channel said about a spec, and the property that holds them to one verdict.

The three channels are `compute-dev spec check FILE`, `compute_ctl -S FILE` and `POST
/configure` on an empty compute. A refusal is one line (`error: …` on stderr and exit 1; the
same text after `compute_ctl: error: ` and exit 1, before PGDATA is touched) or a 400/422 JSON
body with the compute still `empty`; an acceptance is exit 0, a compute that went on past
loading its spec, and a compute that left `empty`. Anything else (a traceback, a 500, a second
line) is neither, and fails the property by itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

PARSE_PREFIX = "failed to parse the request body as json: "
"""How `/configure` begins the error for a body that is not JSON text it decodes: the problem
is then located in the body, not in the spec file, so its wording may differ (a file cut off
inside a string is also a body cut off there, but after a number it may not be)."""

SHAPE_PREFIX = "failed to deserialize the json body into the target type: "
"""How `/configure` begins the error for JSON of the wrong shape (422): the line follows,
lower-cased."""


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    message: str = ""
    """The refusal: the one line after `error: ` (command line) or the JSON `error` text."""


def check_verdict(code: int, stderr: str) -> Verdict:
    """`compute-dev spec check`: exit 0, or exit 1 and exactly one `error: ` line."""
    if code == 0:
        return Verdict(True)
    assert code == 1, (code, stderr[:2000])
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr[:2000]
    assert stderr.endswith("\n"), stderr[:2000]
    return Verdict(False, stderr.removeprefix("error: ").removesuffix("\n"))


def configure_verdict(status: int, body: bytes, left_empty: bool) -> Verdict:
    """`POST /configure` on an empty compute: a 400/422 JSON error and still `empty`, or the
    compute took the spec (it left `empty`)."""
    if not left_empty:
        return Verdict(True)
    assert status in (400, 422), (status, body[:2000])
    error = json.loads(body)["error"]
    assert isinstance(error, str)
    return Verdict(False, error)


def assert_one_verdict(text: str, check: Verdict, seed: Verdict, configure: Verdict) -> None:
    """The property: one verdict, and a refusal says the same thing on every channel.

    `spec check` and `-S` read the same file and print the same line, `field: problem`
    (and its causes). `/configure` answers with the problem alone when resolution refuses the
    spec (400), with
    the whole line (lower-cased, the field under `spec`) inside the text of a wrongly shaped
    body (422), and when the body is not JSON text at all only the verdict has to agree."""
    shown = text[:300]
    verdicts = {"spec check": check.accepted, "-S": seed.accepted, "/configure": configure.accepted}
    assert len(set(verdicts.values())) == 1, (verdicts, check, seed, configure, shown)
    if check.accepted:
        return
    assert check.message == seed.message, (check.message, seed.message, shown)
    said = configure.message
    if said.startswith(PARSE_PREFIX):
        return
    if said.startswith(SHAPE_PREFIX):
        line = check.message.lower()
        if line.startswith("document: "):
            line = "spec: " + line.removeprefix("document: ")
        assert said.endswith(line), (check.message, said, shown)
        return
    # The 400 body holds the problem without the causes the line appends (`invalid tenant
    # id` on the API, `…: invalid tenant id: Invalid string length` on the command line).
    assert f": {said}: " in f"{check.message}: ", (check.message, said, shown)
