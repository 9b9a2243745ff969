#!/usr/bin/env bash
# make demo: builds release and runs the end-to-end demo (lands with the UE simulator, issue 6).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
echo "make demo: the end-to-end demo (1,000 UEs registering through IPsec) is not wired yet."
echo "What works today: the IMS-AKA calculator, e.g.:"
./target/release/akactl milenage --k 465b5ce8b199b49faa5f0a2ee238a6bc --op cdc202d5123e20f62b6d676ac72cb318 \
  --rand 23553cbe9637a89d218ae64dae47bf35 --sqn ff9bb4d0b607 --amf b9b9
