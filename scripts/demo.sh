#!/usr/bin/env bash
# make demo: builds release, generates test subscribers and runs the end-to-end demo against
# the akagate daemon started in-process on the memory backend: 1,000 simulated UEs register
# through IMS-AKA and ESP (TCP, hmac-sha-1-96
# + aes-cbc), place 500 calls between them and de-register. Exits 0 only if all succeed.
# Override with UES=.. CALLS=.. TRANSPORT=udp ALG=.. EALG=.. IPV6=1 REPORT=file.
set -euo pipefail
cd "$(dirname "$0")/.."

UES=${UES:-1000}
CALLS=${CALLS:-500}
TRANSPORT=${TRANSPORT:-tcp}
ALG=${ALG:-hmac-sha-1-96}
EALG=${EALG:-aes-cbc}
REPORT=${REPORT:-target/akabench-demo.json}

cargo build --release -p akagate-tools -p akagate-bench

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./target/release/akactl subscribers --count "$UES" --out "$work/subscribers.toml"

extra=()
if [ -n "${IPV6:-}" ]; then extra+=(--ipv6); fi
./target/release/akabench --subscribers "$work/subscribers.toml" --ues "$UES" --calls "$CALLS" \
  --transport "$TRANSPORT" --alg "$ALG" --ealg "$EALG" --deregister --report "$REPORT" \
  "${extra[@]}"
