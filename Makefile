# Two commands from a clean clone: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
ARGS   ?=

.PHONY: run test lint typecheck check bench conformance clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "need Python >= 3.11 as PYTHON (got $$($(PYTHON) --version))"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]' --config-settings editable_mode=compat
	touch $@

run: $(STAMP)          ## start the server on 127.0.0.1:9500, state kept in ./data (Ctrl-C stops it)
	$(BIN)/cc-server --data-dir data $(ARGS)

test: $(STAMP)         ## the whole test suite
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)        ## the standard load mix (benchmark/README.md); ARGS add options
	$(BIN)/cc-bench --spawn --connections 8 --concurrency 256 --sessions 100000 --updates 2 --reservations 1 $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check protocol cc_server cc_client cc_bench tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The black-box conformance suite is not part of this repository: it is looked for at
# $(CONFORMANCE) (give another place with CONFORMANCE=path/to/run.sh).
CONFORMANCE ?= ../shared/conformance/run.sh

conformance:           ## the black-box conformance suite (outside this repository)
	@test -x "$(CONFORMANCE)" || { echo "make conformance: needs the black-box conformance\
	 suite, which is not part of this repository: no executable $(CONFORMANCE) here (set\
	 CONFORMANCE=path/to/run.sh)" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(STAMP)
	"$(CONFORMANCE)" .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
