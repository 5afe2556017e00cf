# Two entry points for people: `make run` and `make test`. Everything else is a helper.
# Debian's interpreter where there is one: the venv must be usable by the unprivileged user the
# tests run PostgreSQL and compute_ctl as (an interpreter under /root is not).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit postgres test-tools proto bench clean lock lowest image \
	image-test

# The venv and the system packages come from scripts/install.sh, which the Dockerfile runs too.
# The first run says what it is doing before pip's quiet minutes.
$(STAMP): pyproject.toml requirements-dev.lock scripts/install.sh
	@echo "make: installing compute_ctl and its development tools into $(VENV) with pip (a few minutes)"
	PYTHON=$(PYTHON) bash scripts/install.sh venv $(VENV) --dev
	touch $(STAMP)

# A whole local compute: storage stand-ins, a spec pointing at them, compute_ctl in the
# foreground (Ctrl-C stops everything). PROTOCOL=grpc fetches the basebackup over gRPC.
PROTOCOL ?= libpq
run: $(STAMP) postgres
	$(BIN)/compute-dev spec check examples/spec.json >/dev/null
	$(BIN)/compute-dev up --protocol $(PROTOCOL)

# PostgreSQL server binaries from Debian's package, installed only when none is found.
postgres:
	bash scripts/install.sh postgres

# What the deployment tests use besides Python (systemd-analyze, unshare/nsenter/setpriv,
# shellcheck), each installed only when missing.
test-tools:
	bash scripts/install.sh test-tools

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy src tests bench

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) postgres test-tools lint typecheck unit

# The lock files, with hashes, from pyproject.toml: requirements.lock is what the image and
# `install.sh system` install, requirements-dev.lock what `make test` and CI run with. Run after
# changing a dependency; `make lowest` then checks the floors.
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --no-header --quiet
lock: $(STAMP)
	$(UV_COMPILE) --upgrade --extra manual -o requirements.lock
	$(UV_COMPILE) --upgrade --extra dev -o requirements-dev.lock

# The unit tests with the lowest versions pyproject.toml allows, so that a floor cannot lie.
LOWEST_VENV := .venv-lowest
lowest: $(STAMP)
	PYTHON=$(PYTHON) bash scripts/install.sh lowest $(LOWEST_VENV) $(BIN)/uv
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit

# The container image, built here without a registry or a daemon: a Debian base made with
# mmdebstrap, then the Dockerfile built with buildah (scripts/image.sh; PIP_CA_BUNDLE names a
# CA bundle for pip behind a TLS proxy). image-test runs the built image's entrypoint against
# the storage stand-ins until it is running, answers SQL and terminates.
IMAGE ?= compute_ctl:$(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
image:
	bash scripts/install.sh image-tools
	IMAGE=$(IMAGE) bash scripts/image.sh base
	IMAGE=$(IMAGE) bash scripts/image.sh build

image-test: $(STAMP) postgres image
	COMPUTE_CTL_IMAGE=$(IMAGE) $(BIN)/pytest -q tests/e2e/test_image.py

# Regenerate the gRPC modules from storage/proto/page_service.proto (a test checks they are fresh).
proto: $(STAMP)
	$(BIN)/python -m compute_ctl.storage.proto.generate

# Benchmarks P1-P5 and F1-F6 (bench/fleet.py) against the physical floor, measured in the same runs (several minutes, never
# part of `make test`), then the table in docs/benchmarks.md from bench/results/*.json.
# catalog.py exits 1 when its goal is missed: a result the table reports, not a failure here.
# P1 and F1-F6 run again on tmpfs when /dev/shm has 2 GiB free (a container's 64 MiB is too
# little: there the disk's noise, hundreds of ms from one start to the next, is gone), P3
# when it has 8 GiB (its clusters, about 1.6 GiB each, are all kept until the timing is done).
bench: $(STAMP) postgres
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/status_latency.py
	-$(BIN)/python bench/catalog.py
	-if [ "$$(df --output=avail -k /dev/shm 2>/dev/null | tail -n 1)" -gt 2097152 ]; then \
		TMPDIR=/dev/shm $(BIN)/python bench/startup.py --output startup-tmpfs; \
	fi
	-if [ "$$(df --output=avail -k /dev/shm 2>/dev/null | tail -n 1)" -gt 8388608 ]; then \
		TMPDIR=/dev/shm $(BIN)/python bench/catalog.py --output bench/results/catalog-tmpfs.json; \
	fi
	$(BIN)/python bench/basebackup.py
	$(BIN)/python bench/api_latency.py
	-$(BIN)/python bench/pid1_memory.py
	$(BIN)/python bench/fleet.py
	-if [ "$$(df --output=avail -k /dev/shm 2>/dev/null | tail -n 1)" -gt 2097152 ]; then \
		TMPDIR=/dev/shm $(BIN)/python bench/fleet.py --output fleet-tmpfs; \
	fi
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .mypy_cache .pytest_cache .ruff_cache
