# Fresh-machine entry points. `make demo` boots the default guest; `make test` runs the tests.
# Every target installs what it needs first, so both work on a bare Debian bookworm machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system venv unicorn guest test test-fast demo bench clean

setup: system venv unicorn guest

system:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Bytecode for every module, refreshed on each make: where Python may not write it at
# import time (PYTHONDONTWRITEBYTECODE, a read-only checkout), each vmsim start would
# compile its ~200 modules again, about 0.2 s of every boot.
venv: $(STAMP)
	@$(PY) -m compileall -q vmsim devices firmware > /dev/null

unicorn: venv
	@$(PY) -m vmsim.build.unicorn

guest: venv system
	@$(VENV)/bin/vmsim guest build
	@$(VENV)/bin/vmsim guest build --arch arm64
	@$(VENV)/bin/vmsim guest build --arch arm64 --distro

test: setup
	@VMSIM_REQUIRE_GUEST=1 $(PY) -m pytest -q -p no:cacheprovider

test-fast: venv
	@$(PY) -m pytest -q -p no:cacheprovider -m "not linux and not stress"

demo: setup
	@$(VENV)/bin/vmsim demo

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
