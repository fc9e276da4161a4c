# remora: two commands matter, `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3.11
STAMP := $(VENV)/.installed
# Debian packages the tests and demo use: compilers for BPF and Wasm guests, the HTTP peers, load tools.
APT_PACKAGES := $(shell grep -v '^\#' .ci/apt-packages | xargs)

.PHONY: run test lint types pytest apt venv clean bench bytecode native

run: $(STAMP) native bytecode
	$(VENV)/bin/remora demo

test: apt $(STAMP) lint types pytest

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

# Byte-compile explicitly: with PYTHONDONTWRITEBYTECODE set, every `remora` start would
# otherwise recompile the package from source (tens of ms per command).
bytecode:
	@$(PY) -m compileall -q remora

# The proxy's hot-path modules, compiled by mypyc from their own source (remora/native.py says
# why and which). A no-op when every extension is newer than its source.
native: $(STAMP)
	@$(PY) -m remora.native build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy remora
	cd bench && ../$(VENV)/bin/mypy --strict run.py suite peers/threadproxy.py

pytest: $(STAMP) native bytecode
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

bench: apt $(STAMP) native bytecode
	$(PY) bench/run.py

clean:
	-$(PY) -m remora.native clean
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
