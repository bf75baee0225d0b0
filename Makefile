# Shiori: `make run` starts the whole system, `make test` runs the test suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
PYTHON      ?= $(shell command -v python3.11 || command -v python3)
PYTEST_ARGS ?=
FUZZ_EXAMPLES ?= 100

.PHONY: help venv run test fuzz chaos bench load clean

help:
	@echo "make run     start all services, the gateway (http://127.0.0.1:8000) and demo data; Ctrl-C stops"
	@echo "make test    run the test suite (PYTEST_ARGS='-k loans -x' passes options to pytest)"
	@echo "make fuzz    fuzz both gateways' APIs against their OpenAPI documents, at length (FUZZ_EXAMPLES=$(FUZZ_EXAMPLES))"
	@echo "make chaos   break the running system on purpose: kill each process, restart RabbitMQ, stop PostgreSQL (~10 min)"
	@echo "make bench   run the benchmarks (BENCH_ARGS='--database postgresql'); prints their figures"
	@echo "make load    the desk day's load at 20 and 100 clients (BENCH_ARGS='--soak 3600' for an hour's soak)"
	@echo "make venv    create $(VENV) and install the project into it (done by run and test)"
	@echo "make clean   remove var/ (local data)"

venv: $(VENV)/.installed

$(PY):
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 found: install Python 3.11" >&2; exit 1; }
	@if ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "installing python3-venv ..."; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	    else \
	        echo "$(PYTHON) cannot create a venv: sudo apt-get install python3-venv" >&2; exit 1; \
	    fi; \
	fi
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' 'setuptools<81'
	@touch $@

run: venv
	scripts/ensure-broker
	exec $(PY) -m shiori run

test: venv
	scripts/ensure-broker
	$(PY) -m pytest $(PYTEST_ARGS)

# The fuzz test of `make test` with many more requests per operation, every check schemathesis has, and new
# requests each run (twenty minutes on two cores, both databases).
fuzz: venv
	scripts/ensure-broker
	SHIORI_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) SHIORI_FUZZ_CHECKS=all $(PY) -m pytest tests/integration/test_api_fuzz.py $(PYTEST_ARGS)

chaos: venv
	scripts/ensure-broker
	SHIORI_CHAOS=full $(PY) -m pytest tests/chaos -s $(PYTEST_ARGS)

bench: venv
	scripts/ensure-broker
	$(PY) benchmarks/circulation.py $(BENCH_ARGS)
	$(PY) benchmarks/loan_scale.py $(BENCH_ARGS)

load: venv
	@$(PY) -c 'import locust' 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]' 'setuptools<81'
	scripts/ensure-broker
	$(PY) benchmarks/load.py $(BENCH_ARGS)

clean:
	rm -rf var/
