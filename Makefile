# akagate — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Build with the DPDK backend when the system's DPDK is present (make deps installs it).
DPDK_FEATURE := $(shell pkg-config --exists libdpdk 2>/dev/null && echo --features dpdk)

APT_PACKAGES := python3-scapy python3-cryptography python3-dnslib sip-tester libdpdk-dev dpdk dpdk-dev libclang-dev clang pkg-config \
                iproute2 openssl libssl-dev libipsec-mb-dev tshark ethtool

.PHONY: all deps build test lint fmt bench demo clean fuzz-smoke fuzz-long test-chart test-package deb install uninstall

all: build

## deps: install the Debian packages the build, tests and benches need (needs root), and
## cargo-fuzz for `make fuzz-smoke` when missing
deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	  fi; \
	else \
	  echo "make deps: not root; install these yourself: $(APT_PACKAGES)"; \
	fi
	@if ! $(CARGO) fuzz --version >/dev/null 2>&1; then \
	  $(CARGO) install cargo-fuzz --locked --quiet; \
	fi

## build: release build of every crate
build:
	$(CARGO) build --release --workspace $(DPDK_FEATURE)

## lint: rustfmt and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(DPDK_FEATURE) -- -D warnings
	python3 scripts/module-graph.py

## test: lint, then the whole test suite (network-namespace tests need root)
test: deps lint
	$(CARGO) test --workspace --no-fail-fast $(DPDK_FEATURE)
	$(MAKE) --no-print-directory test-chart test-package

## test-chart: bench/chart.py and bench/summary.py on the committed bench/results
test-chart:
	python3 -m unittest discover -s bench -p 'test_*.py'

## test-package: build the .deb, install it, run the installed daemon as its unit would, purge (as root; installs cargo-deb if missing; skipped when not root)
test-package:
	@if [ "$$(id -u)" = 0 ] && ! $(CARGO) deb --version >/dev/null 2>&1; then \
	  echo "make test-package: installing cargo-deb"; $(CARGO) install cargo-deb --locked --quiet; \
	fi
	./scripts/test-package.sh

## deb: target/debian/akagate_*.deb with cargo-deb (cargo install cargo-deb --locked)
deb:
	$(CARGO) build --release -p akagate -p akagate-tools
	$(CARGO) deb --no-build --strip

# make install: PREFIX and DESTDIR are honoured; an existing config is never overwritten.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR ?= $(PREFIX)/share/doc/akagate
RELEASE_BINS := target/release/akagate target/release/akactl

## install: akagate, akactl, the systemd unit, the example config ($(SYSCONFDIR)/akagate), docs; run make build first
install:
	@for b in $(RELEASE_BINS); do \
	  [ -x $$b ] || { echo "make install: $$b is missing; run make build first"; exit 1; }; \
	done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/akagate $(DESTDIR)$(DOCDIR)
	install -m 755 $(RELEASE_BINS) $(DESTDIR)$(BINDIR)/
	sed -e 's|/usr/bin/akagate|$(BINDIR)/akagate|' -e 's|/etc/akagate/|$(SYSCONFDIR)/akagate/|g' \
	  -e 's|/usr/share/doc/akagate/|$(DOCDIR)/|g' packaging/akagate.service > $(DESTDIR)$(UNITDIR)/akagate.service
	chmod 644 $(DESTDIR)$(UNITDIR)/akagate.service
	install -m 644 packaging/sysusers.d/akagate.conf $(DESTDIR)$(SYSUSERSDIR)/akagate.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/akagate/akagate.toml ] || \
	  install -m 644 packaging/akagate.toml $(DESTDIR)$(SYSCONFDIR)/akagate/akagate.toml
	install -m 644 README.md docs/CONFIG.md docs/OPERATIONS.md $(DESTDIR)$(DOCDIR)/
	@echo "installed; then: systemd-sysusers; provision /var/lib/akagate/subscribers.toml;" \
	  "edit $(SYSCONFDIR)/akagate/akagate.toml; systemctl daemon-reload; systemctl enable --now akagate"

## uninstall: remove what make install put there (the config in $(SYSCONFDIR)/akagate stays)
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/akagate $(DESTDIR)$(BINDIR)/akactl $(DESTDIR)$(UNITDIR)/akagate.service \
	  $(DESTDIR)$(SYSUSERSDIR)/akagate.conf
	rm -rf $(DESTDIR)$(DOCDIR)

fmt:
	$(CARGO) fmt --all

## bench: criterion benches plus the OpenSSL baseline, printed side by side
bench: deps
	./bench/run.sh

## demo: 1,000 simulated UEs register through IMS-AKA/ESP and place 500 calls (veth + AF_PACKET as root, in-memory otherwise); MODE=core: akagate in proxy mode in front of akacore (S-CSCF + HSS); NODES=2 MODE=core: two nodes, one core
demo: deps
	./scripts/demo.sh

## fuzz-smoke: every cargo-fuzz target for FUZZ_SECONDS (10) each; needs cargo-fuzz (make deps;
## runs on stable with RUSTC_BOOTSTRAP=1). CI runs it with FUZZ_SECONDS=5 (.ci/run).
FUZZ_SECONDS ?= 10
fuzz-smoke:
	@if ! $(CARGO) fuzz --version >/dev/null 2>&1; then \
	  echo "make fuzz-smoke: needs cargo-fuzz: make deps (cargo install cargo-fuzz --locked)"; \
	  exit 1; \
	fi
	@mkdir -p fuzz/target; for t in $$($(CARGO) fuzz list); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  if ! RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      > fuzz/target/smoke-$$t.log 2>&1; then \
	    tail -n 40 fuzz/target/smoke-$$t.log; echo "fuzz $$t FAILED (reproducer in fuzz/artifacts/$$t)"; exit 1; \
	  fi; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' fuzz/target/smoke-$$t.log; \
	done

## fuzz-long: each target in FUZZ_TARGETS (all) to FUZZ_RUNS (10M) executions, without the
## sanitizer, one after the other; logs in fuzz/target/long-<target>.log (docs/OPERATIONS.md).
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS ?= $$($(CARGO) fuzz list)
fuzz-long:
	@cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -s none
	@mkdir -p fuzz/target; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_RUNS) executions)"; \
	  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none $$t -- -runs=$(FUZZ_RUNS) -print_final_stats=1) \
	      > fuzz/target/long-$$t.log 2>&1; then \
	    tail -n 40 fuzz/target/long-$$t.log; echo "fuzz $$t FAILED (reproducer in fuzz/artifacts/$$t)"; exit 1; \
	  fi; \
	  grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' fuzz/target/long-$$t.log; \
	done

clean:
	$(CARGO) clean
