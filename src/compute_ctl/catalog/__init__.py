"""Catalog reconciliation: roles, databases, delta operations, grants, extensions, migrations.

inspect (one read of the catalog) → plan (a pure diff, in upstream's phase order) → execute.
Re-applying an unchanged spec plans, and so executes, nothing.
"""

from __future__ import annotations

from compute_ctl.catalog.apply import (
    ApplyReport,
    apply_spec,
    max_service_connections,
    plan_spec,
    update_neon_extension,
)
from compute_ctl.catalog.migrations import (
    MigrationReport,
    check_migration_effects,
    run_migrations,
    should_run_migrations,
)
from compute_ctl.catalog.ondemand import install_extension, set_role_grants
from compute_ctl.catalog.phases import ALL_PHASES, Phase, Plan, Statement
from compute_ctl.catalog.plan import PlanOptions, build_plan
from compute_ctl.spec.privilege import Privilege

__all__ = [
    "ALL_PHASES",
    "ApplyReport",
    "MigrationReport",
    "Phase",
    "Plan",
    "PlanOptions",
    "Privilege",
    "Statement",
    "apply_spec",
    "build_plan",
    "check_migration_effects",
    "install_extension",
    "max_service_connections",
    "plan_spec",
    "run_migrations",
    "set_role_grants",
    "should_run_migrations",
    "update_neon_extension",
]
