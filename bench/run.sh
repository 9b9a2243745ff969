#!/usr/bin/env bash
# `make bench`: runs akagate's criterion benches and external baselines, prints one table per
# section and writes bench/results/<section>.json.
#
# Sections are shell functions named section_<name>, registered in SECTIONS below. To add one
# (SA lookup, packet I/O, ...): write section_<name>, make it print its table and write
# "$RESULTS/<name>.json", and append <name> to SECTIONS. Run a subset with
#   bench/run.sh esp            # only the ESP section
# Environment: ESP_BENCH_QUICK=1 shortens criterion's measurement (for smoke runs),
# BENCH_REUSE=1 reuses the last criterion results instead of re-running cargo bench,
# OPENSSL_SECONDS (default 3) sets how long each `openssl speed` run lasts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="$ROOT/bench/results"
PY=/usr/bin/python3
mkdir -p "$RESULTS"
cd "$ROOT"

TARGET_DIR="$(cargo metadata --no-deps --format-version 1 |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
CRITERION="$TARGET_DIR/criterion"

# criterion_ns <group> <function> <parameter>: median time per iteration in ns (the median,
# not the mean, because the build machine is shared and other jobs cause outliers).
criterion_ns() {
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
        "$CRITERION/$1/$2/$3/new/estimates.json"
}

# openssl_bytes_per_s <cipher> <bytes> [-decrypt]: `openssl speed -evp` throughput in bytes/s
# (machine-readable "+F:<n>:<cipher>:<bytes/s>" line).
openssl_bytes_per_s() {
    local cipher=$1 bytes=$2
    shift 2
    openssl speed -mr -seconds "${OPENSSL_SECONDS:-3}" -bytes "$bytes" "$@" -evp "$cipher" 2>/dev/null |
        awk -F: '/^\+F:/ { print $4 }' | tail -n 1
}

# ---------------------------------------------------------------------------------------------
# ESP: our encapsulation/decapsulation per suite vs OpenSSL's stitched AES-CBC-HMAC-SHA1 and
# AES-GCM on one core. Sizes are upper-layer payload bytes, the same N as `openssl speed -bytes`.
ESP_SIZES=(64 256 1024 1408)
ESP_SUITES=(sha1_aescbc md5_aescbc sha1_3des sha1_null aesgcm aesgmac)

section_esp() {
    if [[ -n ${BENCH_REUSE:-} ]]; then
        echo "== ESP: reusing the last criterion results (BENCH_REUSE set)"
    else
        echo "== ESP: cargo bench -p akagate-bench --bench esp"
        cargo bench -p akagate-bench --bench esp >"$RESULTS/esp-criterion.log" 2>&1 || {
            tail -n 30 "$RESULTS/esp-criterion.log"
            return 1
        }
    fi
    echo "== ESP: openssl $(openssl version | awk '{print $2}') speed -evp, ${OPENSSL_SECONDS:-3}s per size"
    local rows=() size suite dir ns ossl_cipher ossl ossl_dec_args
    declare -A ossl_cache
    for size in "${ESP_SIZES[@]}"; do
        ossl_cache["cbc-enc-$size"]=$(openssl_bytes_per_s aes-128-cbc-hmac-sha1 "$size")
        ossl_cache["cbc-dec-$size"]=$(openssl_bytes_per_s aes-128-cbc-hmac-sha1 "$size" -decrypt)
        ossl_cache["gcm-enc-$size"]=$(openssl_bytes_per_s aes-128-gcm "$size")
        ossl_cache["gcm-dec-$size"]=$(openssl_bytes_per_s aes-128-gcm "$size" -decrypt)
    done
    for dir in encrypt decrypt; do
        for suite in "${ESP_SUITES[@]}"; do
            for size in "${ESP_SIZES[@]}"; do
                ns=$(criterion_ns "esp_$dir" "$suite" "$size")
                case $suite in
                    sha1_aescbc) ossl_cipher=cbc ;;
                    aesgcm) ossl_cipher=gcm ;;
                    *) ossl_cipher= ;;
                esac
                ossl=""
                if [[ -n $ossl_cipher ]]; then
                    ossl=${ossl_cache["$ossl_cipher-${dir:0:3}-$size"]}
                fi
                rows+=("$dir $suite $size $ns ${ossl:-none}")
            done
        done
    done
    local rows_file="$RESULTS/.esp-rows"
    printf '%s\n' "${rows[@]}" >"$rows_file"
    "$PY" - "$rows_file" "$RESULTS/esp.json" <<'PYEOF'
import json, sys

def cell(v, width, prec):
    return f"{v:>{width}.{prec}f}" if v is not None else "-".rjust(width)

results = []
head = ("dir", "suite", "size", "our Mpps", "our Gbps", "OpenSSL Gbps", "ratio")
print(f"{head[0]:8} {head[1]:12} {head[2]:>5} {head[3]:>9} {head[4]:>9} {head[5]:>13} {head[6]:>6}")
for line in open(sys.argv[1]):
    d, suite, size, ns, ossl = line.split()
    size, ns = int(size), float(ns)
    mpps = 1e3 / ns
    gbps = size * 8 / ns
    o = None if ossl == "none" else float(ossl) * 8 / 1e9
    ratio = None if o is None else gbps / o
    print(f"{d:8} {suite:12} {size:>5} {mpps:>9.3f} {gbps:>9.2f} {cell(o, 13, 2)} {cell(ratio, 6, 2)}")
    results.append({"direction": d, "suite": suite, "payload_bytes": size, "ns_per_packet": ns,
                    "mpps": mpps, "gbps": gbps, "openssl_gbps": o, "ratio_vs_openssl": ratio})
baseline = {
    "sha1_aescbc": "openssl speed -evp aes-128-cbc-hmac-sha1 -bytes N [-decrypt]: stitched "
                   "AES-CBC + SHA-1 block updates only (no HMAC finalization, no outer hash, "
                   "no ESP framing), so it flatters OpenSSL most at small N",
    "aesgcm": "openssl speed -evp aes-128-gcm -bytes N [-decrypt]",
}
with open(sys.argv[2], "w") as f:
    json.dump({"section": "esp",
               "unit_note": "sizes are upper-layer payload bytes per packet; Gbps counts payload",
               "openssl_baseline": baseline, "results": results}, f, indent=2)
PYEOF
    rm -f "$rows_file"
    echo "wrote $RESULTS/esp.json (criterion log: $RESULTS/esp-criterion.log)"
}

# ---------------------------------------------------------------------------------------------
# I/O (akagate-sys): packets per second through AF_PACKET (TX ring / sendmmsg, with and without
# qdisc bypass; TPACKET_V3 RX ring) on a veth pair between two network namespaces at 64 and
# 1400 bytes, and through DPDK's net_af_packet vdev when libdpdk is installed. Needs root.
section_io() {
    local features=()
    pkg-config --exists libdpdk 2>/dev/null && features=(--features dpdk)
    echo "== I/O: cargo bench -p akagate-bench --bench io ${features[*]}"
    AKG_IO_JSON="$RESULTS/io.json" cargo bench -p akagate-bench --bench io "${features[@]}" \
        2>"$RESULTS/io-bench.log" || {
        tail -n 30 "$RESULTS/io-bench.log"
        return 1
    }
    [[ -f $RESULTS/io.json ]] && echo "wrote $RESULTS/io.json (build log: $RESULTS/io-bench.log)"
}
# ---------------------------------------------------------------------------------------------

SECTIONS=(esp)
SECTIONS+=(io)

want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=("${SECTIONS[@]}")
for s in "${want[@]}"; do
    if ! declare -F "section_$s" >/dev/null; then
        echo "unknown section '$s' (have: ${SECTIONS[*]})" >&2
        exit 2
    fi
    "section_$s"
done
