# Two entry points for a fresh machine:
#   make demo   installs everything and runs the demo
#   make check  installs everything and runs the whole test suite
SHELL := /bin/bash
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := .venv/bin/python
PG_ADMIN ?= postgresql://postgres@127.0.0.1:5432/postgres
PG_CHECK ?= postgresql://postgres@127.0.0.1:5432/tongcha_alembic_check

.PHONY: demo check install build-deps postgres browser lint typecheck migrations-check test

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q uv==$(UV_VERSION)

# --compile-bytecode: the packages' bytecode is written once, here, as pip writes it. uv
# leaves it out by default, and where PYTHONDONTWRITEBYTECODE is set every process then
# compiled them anew: each `tongcha` command took 4.4 s to start instead of 1.9.
install: $(UV) build-deps
	$(UV) sync --frozen --all-groups --compile-bytecode

# The package has one compiled part (setup.py), built by the install: a C compiler and
# OpenSSL's headers. Debian's gcc and libssl-dev, when they are missing.
build-deps:
	@(command -v gcc >/dev/null && test -f /usr/include/openssl/sha.h) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libssl-dev >/dev/null)

demo: install
	.venv/bin/tongcha demo

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1

browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

lint: install
	.venv/bin/ruff check src tests bench migrations setup.py
	.venv/bin/ruff format --check src tests bench migrations setup.py

typecheck: install
	.venv/bin/mypy

migrations-check: install postgres
	rm -f .ci-alembic.db
	TONGCHA_DATABASE_URL=sqlite:///.ci-alembic.db .venv/bin/tongcha db upgrade
	TONGCHA_DATABASE_URL=sqlite:///.ci-alembic.db .venv/bin/alembic check
	rm -f .ci-alembic.db
	psql "$(PG_ADMIN)" -qc "DROP DATABASE IF EXISTS tongcha_alembic_check" -c "CREATE DATABASE tongcha_alembic_check"
	TONGCHA_DATABASE_URL=$(PG_CHECK) .venv/bin/tongcha db upgrade
	TONGCHA_DATABASE_URL=$(PG_CHECK) .venv/bin/alembic check
	psql "$(PG_ADMIN)" -qc "DROP DATABASE tongcha_alembic_check"

test: install postgres browser
	.venv/bin/pytest -q

check: lint typecheck migrations-check test
