# remora: two commands matter, `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3.11
STAMP := $(VENV)/.installed
# Debian packages the tests and demo use: compilers for BPF and Wasm guests, the HTTP peers, load tools.
APT_PACKAGES := $(shell grep -v '^\#' .ci/apt-packages | xargs)

.PHONY: run test lint types pytest pytest-interpreted apt venv clean bench bytecode native examples accel proxywasm

run: $(STAMP) native bytecode
	$(VENV)/bin/remora demo

test: apt proxywasm $(STAMP) lint types pytest pytest-interpreted

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
# why and which). A no-op while the sources the last build read (the compiled modules and all they
# import, by content) and the toolchain are unchanged: build/native/stamp.json records them.
native: $(STAMP)
	@$(PY) -m remora.native build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy remora
	cd bench && ../$(VENV)/bin/mypy --strict run.py workers.py suite peers/threadproxy.py

pytest: $(STAMP) native bytecode
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# The proxy's tests once more, on the source the build is compiled from (REMORA_NATIVE=0 keeps the
# extensions out; remora/native.py says how): without a build the proxy must behave the same.
# tests/proxy is what exercises the compiled modules, in about 2 minutes; the rest runs once.
pytest-interpreted: $(STAMP) bytecode
	REMORA_NATIVE=0 $(VENV)/bin/pytest -q tests/test_native.py tests/proxy

# The objects the README's wasm and bpf commands use, built from the sources in examples/ by the
# toolchain `make apt` installs: examples/build/{guest.wasm,prog.bpf.o,packet.bin}.
EXAMPLES_OUT := examples/build
BPF_INCLUDE := /usr/include/$(shell uname -m)-linux-gnu

# The mesh's own BPF programs (remora/accel/bpf/*.bpf.c), built reproducibly into
# remora/accel/build/, where remora.accel loads them from.
accel: apt $(STAMP)
	$(PY) -m remora.accel.build

examples: apt $(EXAMPLES_OUT)/guest.wasm $(EXAMPLES_OUT)/prog.bpf.o $(EXAMPLES_OUT)/packet.bin

$(EXAMPLES_OUT)/guest.wasm: examples/wasm/guest.c
	@mkdir -p $(EXAMPLES_OUT)
	clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Werror $< -o $@

$(EXAMPLES_OUT)/prog.bpf.o: examples/bpf/prog.bpf.c
	@mkdir -p $(EXAMPLES_OUT)
	clang -O2 -g -target bpf -I$(BPF_INCLUDE) -Wall -Werror -c $< -o $@

$(EXAMPLES_OUT)/packet.bin: examples/bpf/packet.py
	@mkdir -p $(EXAMPLES_OUT)
	python3 $< $@

# Proxy-Wasm filters written against a real SDK (AssemblyScript, @solo-io/proxy-runtime), one per
# examples/proxy-wasm/assembly/<name>/index.ts, built into examples/build/proxy-wasm/<name>.wasm by
# the compiler examples/proxy-wasm/package-lock.json pins. `npm ci` runs only when node_modules is
# missing or older than the lock file; without npm on PATH it first installs Debian's nodejs and npm
# (a NodeSource node brings its own npm, which Debian's npm package would conflict with).
# examples/proxy-wasm/README.md says what each filter does.
PROXYWASM_DIR := examples/proxy-wasm
PROXYWASM_OUT := $(EXAMPLES_OUT)/proxy-wasm
PROXYWASM_FILTERS := $(notdir $(patsubst %/,%,$(wildcard $(PROXYWASM_DIR)/assembly/*/)))
# --explicitStart: export `_start` (the ABI's load-time entry) rather than a Wasm start section.
ASC_FLAGS := --use abort=abort_proc_exit --optimize --explicitStart

proxywasm: $(PROXYWASM_FILTERS:%=$(PROXYWASM_OUT)/%.wasm)

# The target is npm's own record of the installed tree, written last: a failed install leaves none.
PROXYWASM_INSTALLED := $(PROXYWASM_DIR)/node_modules/.package-lock.json

$(PROXYWASM_INSTALLED): $(PROXYWASM_DIR)/package-lock.json $(PROXYWASM_DIR)/package.json
	@if ! command -v npm >/dev/null; then \
		echo "proxywasm: installing nodejs npm"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm; \
	fi
	cd $(PROXYWASM_DIR) && npm ci --no-audit --no-fund
	@touch $@

# asc runs from examples/proxy-wasm with relative paths, so nothing of the checkout's location ends
# up in the module: the output is byte-for-byte the same wherever and whenever it is built.
$(PROXYWASM_OUT)/%.wasm: $(PROXYWASM_DIR)/assembly/%/index.ts $(PROXYWASM_INSTALLED)
	@mkdir -p $(@D)
	cd $(PROXYWASM_DIR) && node_modules/.bin/asc assembly/$*/index.ts -b $(CURDIR)/$@ $(ASC_FLAGS)

bench: apt $(STAMP) native bytecode
	$(PY) bench/run.py

# `remora.native clean` removes the extensions and build/native; the rm covers a venv gone first.
clean:
	-$(PY) -m remora.native clean
	rm -rf build/native $(VENV) .mypy_cache .pytest_cache .ruff_cache
