# Two entry points for people: `make run` and `make test`. Everything else is a helper.
# Debian's interpreter where there is one: the venv must be usable by the unprivileged user the
# tests run PostgreSQL and compute_ctl as (an interpreter under /root is not).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit postgres proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A whole local compute: storage stand-ins, a spec pointing at them, compute_ctl in the
# foreground (Ctrl-C stops everything). PROTOCOL=grpc fetches the basebackup over gRPC.
PROTOCOL ?= libpq
run: $(STAMP) postgres
	$(BIN)/compute-dev spec check examples/spec.json >/dev/null
	$(BIN)/compute-dev up --protocol $(PROTOCOL)

# PostgreSQL server binaries from Debian's package, installed only when none is found.
postgres:
	@if command -v postgres >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		echo "postgres: found"; \
	else \
		echo "postgres: not found, installing Debian's postgresql"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql postgresql-contrib >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy src tests bench

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) postgres lint typecheck unit

# Regenerate the gRPC modules from storage/proto/page_service.proto (a test checks they are fresh).
proto: $(STAMP)
	$(BIN)/python -m compute_ctl.storage.proto.generate

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
