# The two commands a newcomer needs: `make run` and `make test`. Everything else is set-up they call.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .local/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
INSTANCES ?= 1
SERVICES := referral panel assignment plans hub reporting

export PYTHONPATH := $(CURDIR)

.PHONY: help venv setup run demo stop clean test cluster-test lint typecheck bench docs

help:
	@echo "make run    set up everything and start the whole system (Ctrl-C stops it); INSTANCES=2 runs two of each"
	@echo "make test   set up a separate test stack and run ruff, mypy and every test"
	@echo "make stop   stop the local stack; make clean removes its data; make bench runs the benchmarks"

$(UV):
	$(PYTHON) -m venv .local/uv
	.local/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --all-groups --quiet
	touch $@

venv: $(VENV)/.synced

# Infrastructure (PostgreSQL, Kafka, Zipkin) for one stack, then topics and migrations.
setup: venv
	STACK=$(STACK) deploy/local/stack.sh start
	eval "$$(STACK=$(STACK) deploy/local/stack.sh env)" && $(PY) -m shared.messaging.topics create
	eval "$$(STACK=$(STACK) deploy/local/stack.sh env)" && $(PY) -m deploy.local.migrate

run: setup
	eval "$$(STACK=$(STACK) deploy/local/stack.sh env)" && STACK=$(STACK) $(PY) -m deploy.local.run --stop-stack --demo --instances $(INSTANCES)

# Replays one sample journey against a running `make run`.
demo: venv
	eval "$$(STACK=$(STACK) deploy/local/stack.sh env)" && $(PY) -m deploy.local.demo

stop:
	STACK=$(STACK) deploy/local/stack.sh stop

clean:
	STACK=dev deploy/local/stack.sh clean
	STACK=test deploy/local/stack.sh clean
	deploy/local/cluster.sh clean

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy shared services tests bench deploy tools

test: venv lint typecheck
	$(MAKE) --no-print-directory setup STACK=test
	eval "$$(STACK=test deploy/local/stack.sh env)" && STACK=test $(VENV)/bin/pytest -q --durations=15 \
		--deselect tests/integration/test_hub_service.py --ignore=tests/cluster
	# The hub's in-process tests run in a process of their own: after the other modules' in-process services, one of
	# them has hung on an await with no timeout in two of five runs (not yet explained; see the closing note).
	eval "$$(STACK=test deploy/local/stack.sh env)" && STACK=test $(VENV)/bin/pytest -q tests/integration/test_hub_service.py

# Kafka's replication under broker crashes (about 3 minutes): a three-broker KRaft cluster, the services and a stream
# of journeys on it, the busiest leader SIGKILLed three times. Not part of `make test`.
cluster-test: venv
	$(MAKE) --no-print-directory setup STACK=test
	eval "$$(STACK=test deploy/local/stack.sh env)" && STACK=test $(VENV)/bin/pytest -q -s tests/cluster

# The integrators' contract, generated from the event catalogue; a unit test fails when it drifts from the code.
docs: venv
	$(PY) -m shared.events.asyncapi

bench: venv
	$(MAKE) --no-print-directory setup STACK=test
	eval "$$(STACK=test deploy/local/stack.sh env)" && $(PY) -m bench.hop
	eval "$$(STACK=test deploy/local/stack.sh env)" && $(PY) -m bench.intake
	eval "$$(STACK=test deploy/local/stack.sh env)" && $(PY) -m bench.escalation
	eval "$$(STACK=test deploy/local/stack.sh env)" && $(PY) -m bench.journey
	eval "$$(STACK=test deploy/local/stack.sh env)" && $(PY) -m bench.rebuild
