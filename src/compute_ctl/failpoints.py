"""Failpoints of testing builds: named places where a test can make compute_ctl fail or wait.

Upstream compiles them in only for its testing builds; here they are off unless the process is
started with `COMPUTE_CTL_TESTING=1` (docs/deploying.md). When on, `FAILPOINTS` is read at
start (`name=actions;name=actions`), and `POST /failpoints` changes them at run time. Actions
use the syntax of the `fail` crate upstream uses: `[p%][cnt*]task[(arg)]`, chained with `->`;
the tasks are `off`, `return`, `sleep`, `delay`, `print`, `panic`, `pause` and `yield`, plus
upstream's own `exit` (end the process with exit code 1). The places compute_ctl evaluates are
upstream's: `compute-migration`, `compute-prewarm`, `compute-promotion`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from compute_ctl.envflags import env_flag

log = logging.getLogger(__name__)

TESTING_ENV = "COMPUTE_CTL_TESTING"
FAILPOINTS_ENV = "FAILPOINTS"

MIGRATION = "compute-migration"
PREWARM = "compute-prewarm"
PROMOTION = "compute-promotion"

_TASKS = frozenset({"off", "return", "sleep", "delay", "print", "panic", "pause", "yield"})
_ACTION = re.compile(
    r"(?:(?P<pct>[0-9]+(?:\.[0-9]+)?)%)?(?:(?P<cnt>[0-9]+)\*)?(?P<task>[a-z]+)(?:\((?P<arg>.*)\))?",
    re.DOTALL,
)


class FailpointError(ValueError):
    """A failpoint configuration that cannot be parsed (the message says why)."""


class FailpointPanicError(RuntimeError):
    """The `panic` task: the code at the failpoint fails with this."""


def is_testing_build(environ: Mapping[str, str]) -> bool:
    return env_flag(environ, TESTING_ENV)


@dataclass
class _Action:
    task: str
    arg: str | None = None
    probability: float = 1.0
    remaining: int | None = None  # None: unlimited

    def take(self) -> bool:
        """Whether this action fires now (and uses one of its counts if it does)."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.probability < 1.0 and random.random() >= self.probability:  # noqa: S311
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


def _parse_action(text: str) -> _Action:
    match = _ACTION.fullmatch(text.strip())
    if match is None:
        raise FailpointError(f"parse {text} failed")
    task, arg = match.group("task"), match.group("arg")
    if task not in _TASKS and task != "exit":
        raise FailpointError(f"unrecognized command {task!r}")
    if task in ("sleep", "delay") and (arg is None or not arg.strip().isdigit()):
        raise FailpointError(f"{task} needs a number of milliseconds")
    probability = 1.0
    if match.group("pct") is not None:
        probability = float(match.group("pct")) / 100
    count = match.group("cnt")
    return _Action(task, arg, probability, int(count) if count is not None else None)


def parse_actions(actions: str) -> list[_Action]:
    if actions.strip() == "exit":
        return [_Action("exit")]
    return [_parse_action(part) for part in actions.split("->")]


@dataclass
class Failpoints:
    """The configured failpoints of one process; `enabled` is the testing switch."""

    enabled: bool = False
    _actions: dict[str, list[_Action]] = field(default_factory=dict)
    _changed: dict[str, asyncio.Event] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Failpoints:
        """Off unless the testing switch is set; then `FAILPOINTS` is applied (a malformed
        entry is a FailpointError naming it, so the process does not start)."""
        points = cls(enabled=is_testing_build(environ))
        value = environ.get(FAILPOINTS_ENV)
        if not points.enabled or not value:
            return points
        for number, entry in enumerate(value.split(";"), start=1):
            name, sep, actions = entry.partition("=")
            if not sep:
                raise FailpointError(
                    f"startup failpoints: missing action on the {number}th failpoint; "
                    f"try `{entry}=return`"
                )
            try:
                points.configure(name, actions)
            except FailpointError as exc:
                raise FailpointError(
                    f"startup failpoints: failed to apply failpoint {name}={actions}: {exc}"
                ) from None
        return points

    def configure(self, name: str, actions: str) -> None:
        """Set (or with `off`, clear) a failpoint; FailpointError for bad actions."""
        parsed = parse_actions(actions)
        log.info("cfg failpoint: %s %s", name, actions)
        self._actions[name] = parsed
        event = self._changed.pop(name, None)
        if event is not None:  # a paused failpoint resumes on any change
            event.set()

    async def hit(self, name: str) -> bool:
        """Whether the failpoint `name` says to fail here (a `return` task)."""
        return await self.evaluate(name) is not None

    async def evaluate(self, name: str) -> str | None:
        """Run the failpoint `name`: None to go on, or the argument of a `return` task (''
        without one), which the place then acts on. Raises FailpointPanicError for `panic`."""
        if not self.enabled:
            return None
        actions = self._actions.get(name)
        if not actions:
            return None
        action = next((a for a in actions if a.take()), None)
        if action is None:
            return None
        task = action.task
        if task == "return":
            return action.arg if action.arg is not None else ""
        if task in ("sleep", "delay"):
            seconds = int(action.arg or "0") / 1000
            log.info("failpoint %r: sleeping for %s s", name, seconds)
            await asyncio.sleep(seconds)
        elif task == "print":
            log.info("failpoint %s: %s", name, action.arg or "")
        elif task == "yield":
            await asyncio.sleep(0)
        elif task == "panic":
            raise FailpointPanicError(action.arg or f"failpoint {name} panic")
        elif task == "exit":
            log.info("Exit requested by failpoint")
            sys.stderr.flush()
            os._exit(1)
        elif task == "pause":  # until the failpoint is configured again
            log.info("at failpoint %s: paused", name)
            await self._changed.setdefault(name, asyncio.Event()).wait()
        return None
