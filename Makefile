# make run-server / make run-client run the product (standard library only), in the foreground, with the
# project's .venv when it exists (TLS mode's private chats need its cryptography), else $(PYTHON). make reports
# a program's error exit as "make: *** [...] Error 1" and exits 2 itself: for the program's own status, run
# python3 server_main.py / client_main.py directly (README.md has the commands).
# make lint runs ruff and mypy (settings in pyproject.toml); make test runs lint, then the suite with coverage.
# Both set up .venv first: the project installed editable with its pinned dev extras (pyproject.toml, the one list).
# make bench / make bench-quick also install the pinned bench-only tools (tests/bench/requirements.txt).
# make fast compiles the hot modules with mypyc (the fast build, docs/performance.md); run-server runs on it once
# built (rebuilt first when a source changed), make clean-fast goes back to the pure-Python modules alone.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
# What run-server and run-client run on: the project's venv when it exists.
RUNPY  := $(if $(wildcard $(VPY)),$(VPY),$(PYTHON))
HOST   ?= 127.0.0.1
PORT   ?= 5000
BLOCK  ?= 10
TIMEOUT ?= 300
CREDENTIALS ?= credentials.txt
STATE  ?= chat-state.db
ARGS   ?=
TLS_CERT ?=
TLS_KEY  ?=
TLS    ?=
CA     ?=
CLUSTER ?=
NODE   ?=
ENGINE_PORT ?= 6379
CERTS  ?= .certs
BENCH_ARGS ?=

.PHONY: run-server run-client run-engine dev-certs lint test test-fast test-compiled sim coverage bench bench-more bench-quick \
	bench-tls bench-cluster bench-metrics fast clean-fast clean
# A C compiler: make test runs the fast tests again on the compiled build only where there is one.
CC_FOUND := $(shell command -v $${CC:-cc} 2>/dev/null)
# The fast build there is (of any interpreter): run-server keeps it current.
FAST_BUILT := $(wildcard reactor/_fast/*/manifest.json)

# CLUSTER=redis://HOST:PORT NODE=ID runs one node of a cluster instead (with the venv's hiredis; nodes on one
# machine may share PORT):  make run-engine, then  make run-server CLUSTER=redis://127.0.0.1:6379 NODE=a
run-server: $(if $(CLUSTER),$(VENV)/.installed) $(if $(FAST_BUILT),fast)
	$(if $(CLUSTER),$(VPY),$(RUNPY)) server_main.py $(PORT) $(BLOCK) $(TIMEOUT) --host $(HOST) \
		--credentials $(CREDENTIALS) --state $(STATE) \
		$(if $(CLUSTER),--cluster $(CLUSTER) --node-id $(NODE) --reuse-port) \
		$(if $(TLS_CERT),--tls-cert $(TLS_CERT)) $(if $(TLS_KEY),--tls-key $(TLS_KEY)) $(ARGS)

# An engine for a cluster on this machine: the tests' redis 7.0 (or valkey/redis from PATH) on 127.0.0.1,
# its data in .venv/engine-data with every write synced (appendfsync always).
run-engine: $(VENV)/.engine
	mkdir -p $(VENV)/engine-data
	$$($(VPY) -m tests.redis_binary | head -1) --port $(ENGINE_PORT) --bind 127.0.0.1 --dir $(CURDIR)/$(VENV)/engine-data \
		--appendonly yes --appendfsync always --save ""

# TLS=1 speaks TLS, trusting the system's CAs; CA=FILE trusts only that CA (and implies TLS).
run-client:
	$(RUNPY) client_main.py $(HOST) $(PORT) $(if $(TLS),--tls) $(if $(CA),--ca $(CA))

# A development CA and a server certificate for localhost, 127.0.0.1 and ::1 in $(CERTS)/ (git-ignored;
# the CA for 10 years, the server certificate for 825 days). Not for production: the CA key lies beside them.
#   make run-server TLS_CERT=.certs/server.pem TLS_KEY=.certs/server.key
#   make run-client CA=.certs/ca.pem HOST=localhost
dev-certs: $(CERTS)/server.pem

$(CERTS)/server.pem:
	mkdir -p $(CERTS)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
		-subj "/CN=chat development CA" -keyout $(CERTS)/ca.key -out $(CERTS)/ca.pem 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
		-keyout $(CERTS)/server.key -out $(CERTS)/server.csr 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > $(CERTS)/server.ext
	openssl x509 -req -in $(CERTS)/server.csr -CA $(CERTS)/ca.pem -CAkey $(CERTS)/ca.key -CAcreateserial \
		-days 825 -extfile $(CERTS)/server.ext -out $@ 2>/dev/null
	rm -f $(CERTS)/server.csr $(CERTS)/server.ext $(CERTS)/ca.srl

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	echo "import coverage; coverage.process_startup()" > "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/coverage-subprocess.pth"
	touch $@

# The fast build: the hot modules compiled by mypyc (the venv's, a dev tool) for the venv's interpreter into
# reactor/_fast/ (git-ignored), only when a source changed since the last build (reactor/fastbuild.py).
fast: $(VENV)/.installed
	$(VPY) -m reactor.fastbuild

clean-fast:
	rm -rf reactor/_fast

# Any finding fails the target (and so make test, and CI); mypy runs even when ruff found something.
lint: $(VENV)/.installed
	$(VPY) -m ruff check .; ruff=$$?; $(VPY) -m mypy && exit $$ruff

# Child processes (the real server and client in end-to-end tests) are measured too. The whole suite runs on
# the pure-Python modules (REACTOR_BUILD=pure); then, where there is a C compiler, the tests marked compiled run again
# on the compiled build (make test-compiled: built or brought up to date first), as CI does.
test: export COVERAGE_PROCESS_START = $(CURDIR)/.coveragerc
test: export COVERAGE_DATA_DIR = $(CURDIR)
test: $(VENV)/.installed $(VENV)/.engine $(VENV)/.prometheus lint
	$(VPY) -m coverage erase
	REACTOR_BUILD=pure $(VPY) -m coverage run -m pytest -q tests
	$(VPY) -m coverage combine -q 2>/dev/null || true
	$(VPY) -m coverage report
	$(if $(CC_FOUND),$(MAKE) --no-print-directory test-compiled,@echo "no C compiler: the compiled build is not tested")

# The tests marked compiled (pyproject.toml) on the compiled build, server processes included (no coverage: it cannot
# see compiled code).
test-compiled: fast $(VENV)/.engine
	REACTOR_BUILD=fast COVERAGE_PROCESS_START= $(VPY) -m pytest -q -m compiled tests

# Cluster mode's engine for the tests: valkey-server/redis-server >= 7.0 from PATH, else Debian bookworm's
# redis 7.0 fetched by apt-get download into .venv/engine/ (no root needed; tests/redis_binary.py).
$(VENV)/.engine: tests/redis_binary.py tests/debian.py $(VENV)/.installed
	$(VPY) -m tests.redis_binary
	touch $@

# The metrics endpoint's end-to-end tests scrape it with a real Prometheus: prometheus from PATH, else Debian
# bookworm's fetched by apt-get download into .venv/prometheus/ (no root needed; tests/prometheus.py).
$(VENV)/.prometheus: tests/prometheus.py tests/debian.py $(VENV)/.installed
	$(VPY) -m tests.prometheus
	touch $@

# The inner loop: the logic and loop tests only, no real processes, no simulator seeds, no coverage.
test-fast: $(VENV)/.installed
	$(VPY) -m pytest -q -m "not e2e and not sim" tests

# The simulator (reactor/sim/, docs/debugging.md): seeds until Ctrl-C, or for SIM_MINUTES; a failing run is shrunk
# and written to sim-failures/.  make sim SIM_MINUTES=10   make sim SIM_ARGS="--seed 42"
SIM_ARGS ?=
sim: $(VENV)/.installed
	$(VPY) -m reactor.sim $(SIM_ARGS)

coverage: test
	$(VPY) -m coverage html
	@echo "HTML report: htmlcov/index.html"

# The bench's peers (miniircd, uvloop) and plotting library go into the same venv, only for the bench.
$(VENV)/.bench-installed: tests/bench/requirements.txt $(VENV)/.installed
	$(VPY) -m pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	touch $@

# Both builds side by side: the fast one is built first where there is a C compiler.
bench: $(VENV)/.bench-installed $(if $(CC_FOUND),fast)
	$(VPY) -m tests.bench.run $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-more

# The rest of make bench, each a script that prints its own figures: what TLS costs, attacks by strangers
# (plaintext and TLS) and a flooding user against a bystander's round trip, password guessing with hashed and plain accounts,
# 200 hashed logins at once, reloading 20,000 accounts (SIGHUP),
# the server's memory with many stored messages, cluster mode on 1, 2 and 4 nodes against the single process,
# and what the operator's tools cost: relay with metrics off and on side by side, a scrape of 10,000 users;
# what --record costs the relay (with the journal's bytes per message) and how fast an hour of 1,000 users replays.
bench-more: $(VENV)/.installed $(VENV)/.engine $(VENV)/.prometheus
	$(VPY) -m tests.bench.tls
	$(VPY) -m tests.bench.attacks
	$(VPY) -m tests.bench.tls_attacks
	$(VPY) -m tests.bench.flood
	$(VPY) -m tests.bench.passwords
	$(VPY) -m tests.bench.logins --retry-after 0.1
	$(VPY) -m tests.bench.reload
	$(VPY) -m tests.bench.mailbox_memory
	$(VPY) -m tests.bench.cluster
	$(VPY) -m tests.bench.metrics
	$(VPY) -m tests.bench.record
	$(VPY) -m tests.bench.replay

# Cluster mode alone: 1, 2 and 4 nodes on one engine against the single process on SQLite, side by side.
bench-cluster: $(VENV)/.installed $(VENV)/.engine
	$(VPY) -m tests.bench.cluster $(BENCH_ARGS)

bench-quick: $(VENV)/.bench-installed $(if $(CC_FOUND),fast)
	$(VPY) -m tests.bench.run --quick $(BENCH_ARGS)

# What metrics cost: the real server's relay with metrics off and on (a real Prometheus scraping it), side by side;
# 10,000 users scraped; reactor-chat-admin who on 1,000 and 10,000 users.
bench-metrics: $(VENV)/.installed $(VENV)/.prometheus
	$(VPY) -m tests.bench.metrics $(BENCH_ARGS)

# What TLS costs: the real server's relay throughput and latency, plaintext and TLS side by side.
bench-tls: $(VENV)/.installed
	$(VPY) -m tests.bench.tls $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .coverage .coverage.* htmlcov .pytest_cache bench-results reactor/_fast
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
