"""compute_dev: development and test tools for compute_ctl (spec checking, local storage
stand-ins). Never imported by compute_ctl itself.

Imports flow one way: `cli` (the `compute-dev` entry point) → `commands` (one module per
subcommand) → `standins` (the servers and their timeline store) → `pgbin` (finding PostgreSQL's
programs and running them unprivileged)."""

from __future__ import annotations
