"""The `compute_ctl` command: as PID 1, fork the tiny init before anything heavy is imported.

A container's PID 1 stays alive for the compute's whole life only to reap orphans and pass
signals on (compute_ctl/pid1.py). Whatever this process has imported before it forks, the init
keeps: importing the command line, the spec models and the HTTP stack first would leave the
idle init with tens of MiB of heap it never uses. So this module imports nothing but `os` and
`sys` before the fork, and the init only `compute_ctl.pid1`; the child then imports the rest.
docs/benchmarks.md has the init's measured memory.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    if os.getpid() == 1:
        from compute_ctl.pid1 import become_init  # noqa: PLC0415 - the point of this module

        become_init()
    from compute_ctl.cli import main as cli_main  # noqa: PLC0415 - only after the fork

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
