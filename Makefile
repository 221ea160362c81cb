# One vocabulary for the whole project: run, test, lint, fmt, bench, chart-check, fuzz.
# The interpreter the virtual environment is made from: Debian's packaged CPython where the machine
# has it with venv, else the first python3 on PATH (override: make PYTHON=...). Debian links its
# interpreter into the executable and builds it with PGO and LTO; a shared-library build with
# neither (pyenv's default) costs the services about a tenth more CPU (docs/scale.md, "The interpreter").
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INTERPRETER := $(VENV)/.interpreter
WHICH_PYTHON := $(PYTHON) -c 'import sys; print(sys.executable)'

.PHONY: run test test-fast lint fmt bench chart-check fuzz audit contracts browser promtool poppler node-tools shell-tools clean install

# The virtual environment is brought up to date whenever pyproject.toml changes, and made anew when
# the interpreter chosen above is not the one it was made from.
$(STAMP): pyproject.toml $(INTERPRETER)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Which interpreter .venv was made from. When another is chosen, the old environment goes and this
# file is rewritten (newer than the stamp); otherwise the file is left alone and nothing is rebuilt.
$(INTERPRETER): FORCE
	@now="$$($(WHICH_PYTHON))"; [ "$$now" = "$$(cat $@ 2>/dev/null)" ] || { rm -rf $(VENV) && mkdir -p $(VENV) && echo "$$now" > $@; }

FORCE:

## Start the whole system on the embedded stack (PostgreSQL + Tansu) and print the URLs.
run: $(STAMP)
	$(PY) -m devstack run

## The whole test suite against real PostgreSQL, the real broker, real HTTP and a real browser.
test: $(STAMP) browser promtool poppler node-tools shell-tools
	$(MAKE) lint
	$(PY) -m pytest -q -p no:cacheprovider --durations=15
	$(MAKE) chart-check

## The browser tests need Debian's Chromium (and a CJK font); install them once if missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: browser tests will fail"; }
	@fc-list :lang=zh 2>/dev/null | grep -q . || { \
	  echo "installing Debian fonts-noto-cjk so the pages' Chinese renders in the browser tests and screenshots"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null) \
	  || echo "fonts-noto-cjk could not be installed: Chinese will show as boxes in screenshots"; }

## The printed-certificate test renders the PDF with Debian's pdftoppm (package poppler-utils).
poppler:
	@command -v pdftoppm >/dev/null 2>&1 || { \
	  echo "installing Debian poppler-utils for the printed-certificate test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null) \
	  || echo "pdftoppm could not be installed: the printed-certificate test will fail"; }

## The interoperability tests read our documents with npm libraries (tests/js, pinned by its lock): the
## status-list reader and the AsyncAPI parser.
node-tools:
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing Debian nodejs and npm for the interoperability tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
	  || echo "npm could not be installed: the status-list interoperability test will fail"; }
	@test -d tests/js/node_modules/@sd-jwt/jwt-status-list -a -d tests/js/node_modules/@asyncapi/parser \
	  || npm ci --prefix tests/js --no-audit --no-fund --silent

## The README walk-through (and its test) use curl and jq.
shell-tools:
	@command -v jq >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 || { \
	  echo "installing Debian jq and curl for the README walk-through test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq curl >/dev/null) \
	  || echo "jq/curl could not be installed: the walk-through test will fail"; }

## The alert-rule tests use Debian's promtool (package prometheus); a parser stands in without it.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian prometheus for promtool"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "promtool could not be installed: the rules are checked by the parser only"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services devstack cli bench
	$(VENV)/bin/lint-imports --no-logo

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Benchmarks against ceilings measured in the same run; writes docs/benchmarks.md.
bench: $(STAMP)
	$(PY) -m bench

## Render, lint and schema-validate the Helm chart with the embedded Helm engine.
chart-check: $(STAMP)
	$(PY) deploy/helm/check_chart.py

## Longer fuzzing of every OpenAPI document than the bounded run in `make test`.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=500 $(PY) -m pytest -q tests/fuzz

## Regenerate the published event contracts (docs/contracts: AsyncAPI 3 + a JSON Schema per payload version).
contracts: $(STAMP)
	$(PY) -m shared.events.contracts write

## Known vulnerabilities in the installed dependencies (PyPI advisory database; also a test in `make test`).
audit: $(STAMP)
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

clean:
	rm -rf .run test-artifacts .pytest_cache
