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
# The editable install. Its log keeps pip's and the compiler's output; its "cc-charging
# build:" lines are shown as they come (what is compiled, on how many cores, how long that
# usually takes, progress), the last saying whether the hot modules were compiled and, if
# not, why. setup.py compiles the C files on every core (build_ext --parallel: all cores).
SHOW_BUILD = $(PYTHON) -u -c 'import sys; [print(line[line.index("cc-charging build:"):], \
	     end="", flush=True) for line in sys.stdin if "cc-charging build:" in line]'
INSTALL = start=$$(date +%s); \
	  echo "installing into $(VENV): dependencies, then the build (log: $(VENV)/install.log)"; \
	  { $(BIN)/python -m pip install -v -e '.[test,dev]' --config-settings editable_mode=compat \
	    2>&1; echo "pip exit status $$?"; } | tee $(VENV)/install.log | \
	  $(SHOW_BUILD); \
	  grep -q '^pip exit status 0$$' $(VENV)/install.log || { tail -n 40 $(VENV)/install.log; exit 1; }; \
	  echo "installed in $$(( $$(date +%s) - start )) s"

.PHONY: run test simulate lint typecheck check bench conformance build built clean docs

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

# The recovery simulation (tests/simulation.py) over more seeds than `make test` runs;
# SEED=S runs that one seed again (a failure prints the command).
SEEDS ?= 100
STEPS ?= 300
simulate: built       ## crash/restart simulation: seeds 0..SEEDS-1 (or SEED=S), STEPS each
	$(BIN)/python -m tests.simulation $(if $(SEED),--seed $(SEED),--seeds $(SEEDS)) --steps $(STEPS)

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

# The API reference: Sphinx (the `docs` extra of pyproject.toml, installed into $(VENV) the
# first time) reads the docstrings of the pure modules (CC_PURE_PYTHON=1: compiled ones
# carry no signatures); every warning is an error. The pages land in $(DOCS_OUT).
DOCS_OUT   = docs/_build/html
DOCS_STAMP = $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	@echo "installing the docs extra of pyproject.toml (Sphinx) into $(VENV)"
	@$(BIN)/python -c 'import subprocess, sys, tomllib; \
	  extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]; \
	  sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *extra]))'
	@touch $@

docs: $(DOCS_STAMP)    ## the API reference (Sphinx), HTML in docs/_build/html
	CC_PURE_PYTHON=1 $(BIN)/python -m sphinx -W --keep-going -q -b html docs $(DOCS_OUT)
	@echo "API reference: $(DOCS_OUT)/index.html"

clean:                 ## remove the virtualenvs and every build product (the compiled .so too)
	rm -rf $(VENV) .venv-pure build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -rf docs/_build
	rm -f *__mypyc*.so
	find protocol cc_diameter cc_server cc_client -name '*.so' -delete
