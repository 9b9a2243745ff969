# akagate — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Build with the DPDK backend when the system's DPDK is present (make deps installs it).
DPDK_FEATURE := $(shell pkg-config --exists libdpdk 2>/dev/null && echo --features dpdk)

APT_PACKAGES := python3-scapy python3-cryptography libdpdk-dev dpdk libclang-dev clang pkg-config \
                iproute2 openssl tshark ethtool

.PHONY: all deps build test lint fmt bench demo clean fuzz-smoke

all: build

## deps: install the Debian packages the build, tests and benches need (needs root)
deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	  fi; \
	else \
	  echo "make deps: not root; install these yourself: $(APT_PACKAGES)"; \
	fi

## build: release build of every crate
build:
	$(CARGO) build --release --workspace $(DPDK_FEATURE)

## lint: rustfmt and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(DPDK_FEATURE) -- -D warnings

## test: lint, then the whole test suite (network-namespace tests need root)
test: deps lint
	$(CARGO) test --workspace --no-fail-fast $(DPDK_FEATURE)

fmt:
	$(CARGO) fmt --all

## bench: criterion benches plus the OpenSSL baseline, printed side by side
bench: deps
	./bench/run.sh

## demo: 1,000 simulated UEs register through IMS-AKA/ESP and place 500 calls (veth + AF_PACKET as root, in-memory otherwise)
demo: deps
	./scripts/demo.sh

## fuzz-smoke: every cargo-fuzz target for FUZZ_SECONDS (20) each; needs nightly + cargo-fuzz
FUZZ_SECONDS ?= 20
fuzz-smoke:
	@if ! $(CARGO) +nightly --version >/dev/null 2>&1 || ! $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  echo "make fuzz-smoke: needs a nightly toolchain and cargo-fuzz:"; \
	  echo "  rustup toolchain install nightly && cargo install cargo-fuzz"; \
	  exit 1; \
	fi
	@mkdir -p fuzz/target; for t in $$($(CARGO) +nightly fuzz list); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  if ! $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      > fuzz/target/smoke-$$t.log 2>&1; then \
	    tail -n 40 fuzz/target/smoke-$$t.log; echo "fuzz $$t FAILED (reproducer in fuzz/artifacts/$$t)"; exit 1; \
	  fi; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' fuzz/target/smoke-$$t.log; \
	done

clean:
	$(CARGO) clean
