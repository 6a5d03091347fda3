# Every target creates or reuses .venv and installs what it needs: the crawler with the `dev`
# and `standins` extras (the stand-ins serve the tests, the demo, the benchmarks and the chaos run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,standins]'
	touch $(STAMP)

install: $(STAMP)

# Unit and integration tests on two pytest-xdist workers (each with its own Dovecot, embedded
# MongoDB and Redis key prefixes); then the end-to-end tests, whose processes time and measure
# themselves, one at a time.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests/unit tests/integration
	$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy config crawler workers standins

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/crawler demo

# The benchmarks' own Python packages, and (as root, when missing) Debian's Dovecot, isync, mpack.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_DEBS := dovecot-imapd isync mpack

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,standins,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@missing=$$(for deb in $(BENCH_DEBS); do dpkg-query -W -f '$${Status}\n' $$deb 2>/dev/null \
		| grep -q 'ok installed' || echo $$deb; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "bench needs: sudo apt-get install $$missing" >&2; exit 1; fi; \
	fi
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The chaos run (chaos/): bounded by default; CHAOS_ARGS="--long" or "--seed N" to change it.
.PHONY: chaos
chaos: $(STAMP)
	$(BIN)/python -m chaos $(CHAOS_ARGS)
