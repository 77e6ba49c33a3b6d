# Two commands from a clean clone: `make run` and `make test`. Everything else is optional.
# The install compiles the hot modules with mypyc where a C compiler is there, else it stays
# pure Python; CC_PURE_PYTHON=1 forces pure Python (at install and at run time).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
# Whether the install stamp was there before this make began: if not, its rule installs
# (and compiles) during this run, and `make build` need not do it a second time.
STAMP_BEFORE := $(wildcard $(STAMP))
ARGS   ?=
# The editable install; its log keeps the compiler's output, and its one "cc-charging build:"
# line says whether the hot modules were compiled and, if not, why.
INSTALL = $(BIN)/python -m pip install -v -e '.[test,dev]' --config-settings editable_mode=compat \
	  > $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }; \
	  grep -h 'cc-charging build:' $(VENV)/install.log | sed 's/^ *//'

.PHONY: run test lint typecheck check bench conformance build built clean

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "need Python >= 3.11 as PYTHON (got $$($(PYTHON) --version))"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@$(INSTALL)
	touch $@

# A compiled editable tree whose hot sources changed since is recompiled first (until then
# protocol/buildinfo.py runs the pure modules rather than the stale extensions).
built: $(STAMP)
	@if $(PYTHON) protocol/buildinfo.py needs-build; then $(MAKE) --no-print-directory build; fi

build: $(STAMP)        ## (re)compile the hot modules in place; CC_PURE_PYTHON=1 removes them
	@$(if $(STAMP_BEFORE),$(INSTALL),true)

run: built            ## start the server on 127.0.0.1:9500, state kept in ./data (Ctrl-C stops it)
	$(BIN)/cc-server --data-dir data $(ARGS)

test: built           ## the whole test suite
	$(BIN)/python -m pytest $(ARGS)

bench: built          ## the standard load mix (benchmark/README.md); ARGS add options
	$(BIN)/cc-bench --spawn --connections 8 --concurrency 256 --sessions 100000 --updates 2 --reservations 1 $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check protocol cc_diameter cc_server cc_client cc_bench tests examples

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
	@$(MAKE) --no-print-directory built
	"$(CONFORMANCE)" .

clean:                 ## remove the virtualenvs and every build product (the compiled .so too)
	rm -rf $(VENV) .venv-pure build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f *__mypyc*.so
	find protocol cc_diameter cc_server cc_client -name '*.so' -delete
