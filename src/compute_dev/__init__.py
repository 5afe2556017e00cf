"""compute_dev: development and test tools for compute_ctl (spec checking, local storage
stand-ins). Never imported by compute_ctl itself."""

from __future__ import annotations
