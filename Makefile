# make run-server / make run-client run the product (standard library only).
# make test sets up .venv with the pinned dev tools, then runs the suite with coverage.
# make bench / make bench-quick also install the pinned bench-only tools (tests/bench/requirements.txt).
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 5000
BLOCK  ?= 10
TIMEOUT ?= 300
CREDENTIALS ?= credentials.txt
STATE  ?= chat-state.db
ARGS   ?=
BENCH_ARGS ?=

.PHONY: run-server run-client test coverage bench bench-quick clean

run-server:
	$(PYTHON) server_main.py $(PORT) $(BLOCK) $(TIMEOUT) --host $(HOST) --credentials $(CREDENTIALS) --state $(STATE) $(ARGS)

run-client:
	$(PYTHON) client_main.py $(HOST) $(PORT)

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	echo "import coverage; coverage.process_startup()" > "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/coverage-subprocess.pth"
	touch $@

# Child processes (the real server and client in end-to-end tests) are measured too.
test: export COVERAGE_PROCESS_START = $(CURDIR)/.coveragerc
test: export COVERAGE_DATA_DIR = $(CURDIR)
test: $(VENV)/.installed
	$(VPY) -m coverage erase
	$(VPY) -m coverage run -m pytest -q tests
	$(VPY) -m coverage combine -q 2>/dev/null || true
	$(VPY) -m coverage report

coverage: test
	$(VPY) -m coverage html
	@echo "HTML report: htmlcov/index.html"

# The bench's peers (miniircd, uvloop) and plotting library go into the same venv, only for the bench.
$(VENV)/.bench-installed: tests/bench/requirements.txt $(VENV)/.installed
	$(VPY) -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(VPY) -m tests.bench.run $(BENCH_ARGS)

bench-quick: $(VENV)/.bench-installed
	$(VPY) -m tests.bench.run --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov .pytest_cache bench-results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
