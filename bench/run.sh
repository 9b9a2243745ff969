#!/usr/bin/env bash
# `make bench`: runs akagate's criterion benches and external baselines, prints one table per
# section and writes bench/results/<section>.json.
#
# Sections are shell functions named section_<name>, registered in SECTIONS below. To add one
# (SA lookup, packet I/O, ...): write section_<name>, make it print its table and write
# "$RESULTS/<name>.json", and append <name> to SECTIONS. Run a subset with
#   bench/run.sh esp            # only the ESP section
# Environment: BENCH_QUICK=1 shrinks every section (smoke run, a few minutes),
# ESP_BENCH_QUICK=1 shortens criterion's measurement (for smoke runs),
# BENCH_REUSE=1 reuses the last criterion results instead of re-running cargo bench,
# OPENSSL_SECONDS (default 3) sets how long each `openssl speed` run lasts, CRYPTO_PAIRS
# (default 3) how many alternated pairs the crypto section takes of the single-packet and burst
# rows against `openssl speed` and dpdk-test-crypto-perf, PKTGEN_PAIRS (default 5) how many the
# pktgen section takes of the fast path against raw AF_PACKET rx (PKTGEN_RAW_SECONDS a run).
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
        # Multi-buffer baseline: `-mb` encrypts 8 TLS records of N bytes per call (AVX2
        # "multi-block", full HMAC and padding per record), but only from 8192 bytes per call:
        # below that OpenSSL silently falls back to one record, so smaller N get no figure.
        ossl_cache["cbc-mb-$size"]=
        if ((8 * size >= 8192)); then
            ossl_cache["cbc-mb-$size"]=$(openssl_bytes_per_s aes-128-cbc-hmac-sha1 "$((8 * size))" -mb)
        fi
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
    # Bursts of 32 over 4 hmac-sha-1-96 + aes-cbc SAs (esp_burst): the multi-buffer kernel
    # the CPU picks, and the same burst through the single-packet path.
    # Then the same bursts decapsulated (esp_burst_decrypt); OpenSSL has no multi-block
    # decryption, so its stitched -decrypt figure is the only baseline there.
    local burst_rows=() variant
    for size in "${ESP_SIZES[@]}"; do
        for variant in mb single; do
            ns=$(criterion_ns esp_burst "$variant" "$size")
            burst_rows+=("encrypt $variant $size $ns ${ossl_cache["cbc-enc-$size"]:-none} ${ossl_cache["cbc-mb-$size"]:-none}")
        done
    done
    for size in "${ESP_SIZES[@]}"; do
        for variant in mb single; do
            ns=$(criterion_ns esp_burst_decrypt "$variant" "$size")
            burst_rows+=("decrypt $variant $size $ns ${ossl_cache["cbc-dec-$size"]:-none} none")
        done
    done
    local rows_file="$RESULTS/.esp-rows" burst_file="$RESULTS/.esp-burst-rows"
    printf '%s\n' "${rows[@]}" >"$rows_file"
    printf '%s\n' "${burst_rows[@]}" >"$burst_file"
    "$PY" - "$rows_file" "$RESULTS/esp.json" "$burst_file" <<'PYEOF'
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
burst = []
print()
print("bursts of 32 packets over 4 SAs, hmac-sha-1-96 + aes-cbc (esp_burst, esp_burst_decrypt)")
head = ("dir", "variant", "size", "our Mpps", "our Gbps", "OpenSSL Gbps", "ratio", "OpenSSL -mb Gbps", "ratio")
print(f"{head[0]:8} {head[1]:8} {head[2]:>5} {head[3]:>9} {head[4]:>9} {head[5]:>13} {head[6]:>6} {head[7]:>17} {head[8]:>6}")
for line in open(sys.argv[3]):
    d, variant, size, ns, ossl, mb = line.split()
    size, ns = int(size), float(ns) / 32
    gbps = size * 8 / ns
    o = None if ossl == "none" else float(ossl) * 8 / 1e9
    m = None if mb == "none" else float(mb) * 8 / 1e9
    r1 = None if o is None else gbps / o
    r2 = None if m is None else gbps / m
    print(f"{d:8} {variant:8} {size:>5} {1e3 / ns:>9.3f} {gbps:>9.2f} {cell(o, 13, 2)} {cell(r1, 6, 2)} "
          f"{cell(m, 17, 2)} {cell(r2, 6, 2)}")
    burst.append({"direction": d, "variant": variant, "payload_bytes": size, "burst": 32, "sas": 4,
                  "ns_per_packet": ns, "mpps": 1e3 / ns, "gbps": gbps, "openssl_gbps": o,
                  "ratio_vs_openssl": r1, "openssl_mb_gbps": m, "ratio_vs_openssl_mb": r2})
baseline = {
    "sha1_aescbc_mb": "openssl speed -mb -evp aes-128-cbc-hmac-sha1 -bytes 8N: AVX2 multi-block, "
                      "8 TLS records of N bytes per call with full HMAC and padding each; only "
                      "for 8N >= 8192 (smaller calls fall back to one record: no figure)",
    "sha1_aescbc": "openssl speed -evp aes-128-cbc-hmac-sha1 -bytes N [-decrypt]: stitched "
                   "AES-CBC + SHA-1 block updates only (no HMAC finalization, no outer hash, "
                   "no ESP framing), so it flatters OpenSSL most at small N",
    "aesgcm": "openssl speed -evp aes-128-gcm -bytes N [-decrypt]",
}
with open(sys.argv[2], "w") as f:
    json.dump({"section": "esp",
               "unit_note": "sizes are upper-layer payload bytes per packet; Gbps counts payload",
               "openssl_baseline": baseline, "results": results, "burst_results": burst}, f,
              indent=2)
PYEOF
    rm -f "$rows_file" "$burst_file"
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

# ---------------------------------------------------------------------------------------------
# Sizes of the end-to-end runs; BENCH_QUICK=1 shrinks everything for a smoke run.
if [[ -n ${BENCH_QUICK:-} ]]; then
    E2E_UES=${E2E_UES:-200} E2E_CALLS=${E2E_CALLS:-100}
    PKTGEN_PKTS_64=${PKTGEN_PKTS_64:-500} PKTGEN_PKTS_1408=${PKTGEN_PKTS_1408:-200}
    PKTGEN_PAIRS=${PKTGEN_PAIRS:-1} PKTGEN_RAW_SECONDS=${PKTGEN_RAW_SECONDS:-0.5}
    MEM_UES=${MEM_UES:-1000,10000} PROXY_UES=${PROXY_UES:-500}
    export ESP_BENCH_QUICK=1 OPENSSL_SECONDS=${OPENSSL_SECONDS:-1}
else
    E2E_UES=${E2E_UES:-2000} E2E_CALLS=${E2E_CALLS:-1000}
    PKTGEN_PKTS_64=${PKTGEN_PKTS_64:-4000} PKTGEN_PKTS_1408=${PKTGEN_PKTS_1408:-1000}
    PKTGEN_PAIRS=${PKTGEN_PAIRS:-5} PKTGEN_RAW_SECONDS=${PKTGEN_RAW_SECONDS:-1}
    MEM_UES=${MEM_UES:-10000,100000,1000000} PROXY_UES=${PROXY_UES:-2000}
fi
PKTGEN_UES=${PKTGEN_UES:-64}

release_bins() {
    cargo build --release -q -p akagate-bench --bin akabench --bin akapktgen
    cargo build --release -q -p akagate-tools --bin akactl
}

# akabench_run NAME SUBSCRIBERS UES ARGS...: one akabench run, report and log in $RESULTS as
# NAME.json / NAME.log; a non-zero exit is printed (failures are in the report).
akabench_run() {
    local name=$1 subs=$2 ues=$3 rc=0
    shift 3
    ./target/release/akabench --subscribers "$subs" --ues "$ues" --quiet --concurrency 64 \
        --report "$RESULTS/$name.json" "$@" >"$RESULTS/$name.log" 2>&1 || rc=$?
    [[ $rc -ne 0 ]] && echo "   akabench $* exited $rc (see $RESULTS/$name.log)"
    return 0
}

# ---------------------------------------------------------------------------------------------
# End to end (akabench): E2E_UES UEs register (IMS-AKA, SAs, protected REGISTER), E2E_CALLS
# calls between them, then de-registration; once with the worker and slowpath stepped inline
# in one thread (one core does everything) and once against the daemon's own threads (one
# worker, memory backend). Rates, latency percentiles and failures from akabench's JSON.
section_e2e() {
    echo "== e2e: akabench --backend inline|memory, $E2E_UES UEs, $E2E_CALLS calls"
    release_bins
    local work
    work=$(mktemp -d)
    ./target/release/akactl subscribers --count "$E2E_UES" --out "$work/subscribers.toml" >/dev/null
    local b
    for b in inline memory; do
        akabench_run "e2e-$b" "$work/subscribers.toml" "$E2E_UES" \
            --calls "$E2E_CALLS" --deregister --backend "$b"
    done
    # Latency at half the maximum: the same daemon open-loop (registrations and calls started
    # at fixed times, latency from each scheduled start) at 50% of the closed-loop rates above.
    local half_reg half_call
    read -r half_reg half_call < <("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(max(1,int(r["registrations_per_second"]/2)), max(1,int(r["calls_per_second"]/2)))' "$RESULTS/e2e-memory.json" 2>/dev/null || echo "")
    if [[ -n $half_reg ]]; then
        rc=0
        ./target/release/akabench --subscribers "$work/subscribers.toml" --ues "$E2E_UES" \
            --calls "$E2E_CALLS" --deregister --quiet --backend memory \
            --reg-rate "$half_reg" --call-rate "$half_call" \
            --report "$RESULTS/e2e-memory-half.json" >"$RESULTS/e2e-memory-half.log" 2>&1 || rc=$?
        [[ $rc -ne 0 ]] && echo "   akabench open loop at half rate exited $rc (failures are in the report)"
    fi
    rm -rf "$work"
    "$PY" - "$RESULTS" <<'PYEOF'
import json, os, sys
res = sys.argv[1]
out = {"section": "e2e", "note": "protected_sip_per_second counts the messages that crossed "
       "an SA: 2 per registration (protected REGISTER, 200), 2 per de-registration, 12 per "
       "call (INVITE, 180, 200, ACK, BYE, 200 on each of the two legs), over the run's time",
       "results": []}
print(f"{'backend':8} {'reg/s':>8} {'calls/s':>8} {'prot.SIP/s':>10} {'failures':>8}   latency p50/p99 (ms)")
for b in ("inline", "memory"):
    p = os.path.join(res, f"e2e-{b}.json")
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    secs = r["registration_seconds"] + r["call_seconds"]
    msgs = 2 * r["registered"] + 2 * r["deregistered"] + 12 * r["calls_completed"]
    sip_s = msgs / secs if secs > 0 else 0.0
    fails = r["registration_failures"] + r["call_failures"] + sum(r["failures_by_cause"].values())
    lat = "  ".join(f"{k} {v['p50']/1e3:.2f}/{v['p99']/1e3:.2f}" for k, v in sorted(r["latency_us"].items()))
    print(f"{b:8} {r['registrations_per_second']:>8.0f} {r['calls_per_second']:>8.0f} {sip_s:>10.0f} {fails:>8}   {lat}")
    out["results"].append({"backend": b, "ues": r["registered"], "calls": r["calls_completed"],
                           "registrations_per_second": r["registrations_per_second"],
                           "calls_per_second": r["calls_per_second"],
                           "protected_sip_per_second": sip_s, "failures": fails,
                           "latency_us": r["latency_us"], "params": r["params"]})
p = os.path.join(res, "e2e-memory-half.json")
if os.path.exists(p):
    r = json.load(open(p))
    reg, inv = r["latency_us"].get("register_200", {}), r["latency_us"].get("invite_200", {})
    rate = r["params"].get("reg_rate")
    print(f"open loop at 50% of the daemon's maximum ({rate} registrations): registration p50/p99 "
          f"{reg.get('p50', 0)/1e3:.2f}/{reg.get('p99', 0)/1e3:.2f} ms, call setup p50/p99 "
          f"{inv.get('p50', 0)/1e3:.2f}/{inv.get('p99', 0)/1e3:.2f} ms, "
          f"{r['registered']} registered, {r['calls_completed']} calls")
    out["half_rate"] = {"backend": "memory", "params": r["params"], "registered": r["registered"],
                        "calls": r["calls_completed"], "latency_us": r["latency_us"]}
json.dump(out, open(os.path.join(res, "e2e.json"), "w"), indent=2)
PYEOF
    echo "wrote $RESULTS/e2e.json (akabench reports: $RESULTS/e2e-{inline,memory}.json)"
}

# ---------------------------------------------------------------------------------------------
# Fast path (akapktgen): PKTGEN_UES UEs register through the in-process daemon (one worker
# thread), then pre-built ESP (hmac-sha-1-96 + aes-cbc) SIP-over-TCP segments of 64 and 1408
# inner bytes are blasted at its port. Per worker core = packets / worker-thread CPU seconds.
# The baseline, the raw AF_PACKET rx rate of a veth (the io bench's four af_packet paths, the
# best of them per frame size), is taken in PKTGEN_PAIRS alternated pairs with the fast path's
# runs (raw first in odd pairs, akapktgen first in even ones): this host's speed moves between
# minutes, so a ratio of two moments says little. Each ESP-in row is the median of its pairs'
# ratios; every pair is kept in pktgen.json (reports: pktgen-<size>-<pair>.json,
# pktgen-raw-<pair>.json).
pktgen_raw_run() {
    local features=()
    pkg-config --exists libdpdk 2>/dev/null && features=(--features dpdk)
    AKG_IO_AFPACKET_ONLY=1 AKG_IO_SECONDS="$PKTGEN_RAW_SECONDS" AKG_IO_JSON="$RESULTS/pktgen-raw-$1.json" \
        cargo bench -p akagate-bench --bench io "${features[@]}" >"$RESULTS/pktgen-raw.log" 2>&1 || {
        tail -n 30 "$RESULTS/pktgen-raw.log"
        return 1
    }
}

pktgen_esp_runs() {
    local size pkts
    for size in 64 1408; do
        pkts=$PKTGEN_PKTS_64
        [[ $size == 1408 ]] && pkts=$PKTGEN_PKTS_1408
        ./target/release/akapktgen --ues "$PKTGEN_UES" --size "$size" --packets-per-ue "$pkts" \
            --sip-bytes 1024 --quiet --report "$RESULTS/pktgen-$size-$1.json" || {
            echo "   akapktgen --size $size failed"
            return 1
        }
    done
}

section_pktgen() {
    echo "== pktgen: akapktgen, $PKTGEN_UES UEs, 64 B x $PKTGEN_PKTS_64 and 1408 B x $PKTGEN_PKTS_1408 per UE," \
        "$PKTGEN_PAIRS pairs with raw AF_PACKET rx"
    release_bins
    rm -f "$RESULTS"/pktgen-*.json
    local i
    for ((i = 1; i <= PKTGEN_PAIRS; i++)); do
        if ((i % 2)); then
            pktgen_raw_run "$i" && pktgen_esp_runs "$i" || return 1
        else
            pktgen_esp_runs "$i" && pktgen_raw_run "$i" || return 1
        fi
    done
    "$PY" - "$RESULTS" "$PKTGEN_PAIRS" <<'PYEOF'
import json, os, statistics, sys
res, pairs = sys.argv[1], int(sys.argv[2])
med = statistics.median
out = {"section": "pktgen", "pairs": pairs, "results": []}
print(f"{'size':>5} {'frames':>8} {'Mpps/core':>9} {'Gbps/core':>9} {'inner Gbps':>10} {'ns/pkt':>7} {'SIP msg/s/core':>14} {'wall Mpps':>9}  drops")
for size in (64, 1408):
    frame = 64 if size == 64 else 1400
    runs = []
    for i in range(1, pairs + 1):
        r = json.load(open(os.path.join(res, f"pktgen-{size}-{i}.json")))
        g = r["gateway"]
        io = json.load(open(os.path.join(res, f"pktgen-raw-{i}.json")))["results"]
        raw = max(x["rx_pps"] for x in io if x["backend"] == "af_packet" and x["frame_bytes"] == frame) / 1e6
        sip = g["sip_in"] / g["worker_busy_seconds"] if g["worker_busy_seconds"] else 0.0
        drops = ",".join(f"{k}={v}" for k, v in g["drops"].items()) or "none"
        print(f"{size:>5} {r['packets']:>8} {g['mpps_per_core']:>9.3f} {g['gbps_per_core']:>9.2f} "
              f"{g['inner_gbps_per_core']:>10.2f} {g['ns_per_packet']:>7.0f} {sip:>14.0f} {g['mpps']:>9.3f}  {drops}")
        runs.append({"pair": i, "raw_first": i % 2 == 1, "packets": r["packets"], "esp_in": g["esp_in"],
                     "mpps_per_core": g["mpps_per_core"], "gbps_per_core": g["gbps_per_core"],
                     "inner_gbps_per_core": g["inner_gbps_per_core"], "ns_per_packet": g["ns_per_packet"],
                     "sip_per_core_second": sip, "wall_mpps": g["mpps"], "drops": g["drops"],
                     "raw_af_packet_rx_mpps": raw, "ratio_vs_raw_rx": g["mpps_per_core"] / raw,
                     "params": r["params"]})
    row = {"size": size}
    for key in ("packets", "esp_in", "mpps_per_core", "gbps_per_core", "inner_gbps_per_core",
                "ns_per_packet", "sip_per_core_second", "wall_mpps", "raw_af_packet_rx_mpps",
                "ratio_vs_raw_rx"):
        row[key] = med(x[key] for x in runs)
    ratios = [x["ratio_vs_raw_rx"] for x in runs]
    row["ratio_range"] = [min(ratios), max(ratios)]
    row["drops"] = {k: v for x in runs for k, v in x["drops"].items()}
    row["params"] = runs[0]["params"]
    row["pairs"] = runs
    out["results"].append(row)
print(f"{'size':>5} {'raw AF_PACKET rx Mpps':>22} {'ESP in per worker core / raw (pairs: median, range)':>52}")
for row in out["results"]:
    lo, hi = row["ratio_range"]
    print(f"{row['size']:>5} {row['raw_af_packet_rx_mpps']:>22.3f} "
          f"{row['ratio_vs_raw_rx']:>29.2f} ({lo:.2f}-{hi:.2f}, {pairs} pairs)")
json.dump(out, open(os.path.join(res, "pktgen.json"), "w"), indent=2)
PYEOF
    echo "wrote $RESULTS/pktgen.json"
}

# ---------------------------------------------------------------------------------------------
# Memory per registered UE (bench/benches/mem.rs, issue 10: a million UEs in 16 GiB): the
# gateway's heap after registering MEM_UES UEs (10k, 100k, 1M) through the in-process gateway,
# counted by a counting global allocator, each UE with its protected TCP connection open, and
# the peak RSS of each run. The 1M run needs about 20 GiB free and stops (failing) when the
# host has less than 2 GiB left.
section_mem() {
    echo "== mem: cargo bench -p akagate-bench --bench mem (UEs: $MEM_UES)"
    AKG_MEM_UES="$MEM_UES" AKG_MEM_JSON="$RESULTS/mem.json" \
        cargo bench -p akagate-bench --bench mem 2>"$RESULTS/mem-bench.log" || {
        tail -n 30 "$RESULTS/mem-bench.log"
        return 1
    }
    echo "wrote $RESULTS/mem.json"
}

# ---------------------------------------------------------------------------------------------
# CPU cost of one full IMS-AKA registration (issue 10): the slowpath core alone, sans-IO
# (criterion `slowpath/benches/register.rs`: REGISTER -> 401 -> protected REGISTER -> 200,
# thread CPU time of the core's `handle` calls), and the worker's and the core's share in the
# in-process gateway (`benches/mem.rs` at REGCOST_UES UEs, thread CPU time per side over the
# steps that did work). Targets: <= 20 us slowpath, <= 10 us worker.
# One gateway run of the regcost section (the mem bench at $2 UEs), report .regcost-gateway-$1.json.
regcost_gateway_run() {
    AKG_MEM_UES="$2" AKG_MEM_JSON="$RESULTS/.regcost-gateway-$1.json" \
        cargo bench -p akagate-bench --bench mem >"$RESULTS/regcost-gateway.log" 2>&1 || {
        tail -n 30 "$RESULTS/regcost-gateway.log"
        return 1
    }
}

# One counted run of the sans-IO core ($2 registrations), output .regcost-sansio-$1.txt.
regcost_sansio_run() {
    AKG_REG_COUNT="$2" cargo bench -p akagate-slowpath --bench register \
        >"$RESULTS/.regcost-sansio-$1.txt" 2>"$RESULTS/regcost-sansio.log" || {
        tail -n 30 "$RESULTS/regcost-sansio.log"
        return 1
    }
}

section_regcost() {
    local ues=${REGCOST_UES:-2000}
    if [[ -n ${BENCH_REUSE:-} ]]; then
        echo "== regcost: reusing the last criterion results (BENCH_REUSE set)"
    else
        echo "== regcost: cargo bench -p akagate-slowpath --bench register"
        cargo bench -p akagate-slowpath --bench register -- ${BENCH_QUICK:+--measurement-time 2 --warm-up-time 1} \
            >"$RESULTS/regcost-criterion.log" 2>&1 || {
            tail -n 30 "$RESULTS/regcost-criterion.log"
            return 1
        }
    fi
    # REGCOST_RUNS processes registering $ues UEs each, the median per side: one run swings
    # by a tenth on this VM, and one run right after the 1 M-UE memory section read three
    # times the others (docs/BENCHMARKS.md, *Round 10 merged*). Separate processes: runs
    # repeated inside one process spread wider (12-21 us), each on the last one's heap.
    # Each gateway run is paired with a counted run of the sans-IO core (AKG_REG_COUNT, the
    # same registration outside criterion), alternated (sans-IO first in odd pairs): the
    # host's speed moves 1.7x within a minute, so only the same moment's two figures say how
    # far the core in the gateway is from the core alone (*The slowpath core in the gateway,
    # round 16*).
    local runs=${REGCOST_RUNS:-9} count=${REGCOST_COUNT:-8000} i
    echo "== regcost: cargo bench -p akagate-bench --bench mem ($ues UEs, $runs runs, CPU per side)," \
        "each paired with AKG_REG_COUNT=$count of the sans-IO core"
    rm -f "$RESULTS"/.regcost-gateway-*.json "$RESULTS"/.regcost-sansio-*.txt
    for ((i = 1; i <= runs; i++)); do
        if ((i % 2)); then
            regcost_sansio_run "$i" "$count" && regcost_gateway_run "$i" "$ues" || return 1
        else
            regcost_gateway_run "$i" "$ues" && regcost_sansio_run "$i" "$count" || return 1
        fi
    done
    local full clock
    full=$(criterion_ns registration full "")
    clock=$(criterion_ns registration thread_cpu_clock_pair "")
    "$PY" - "$full" "$clock" "$RESULTS/regcost.json" "$runs" "$RESULTS" <<'PYEOF'
import json, os, re, statistics, sys
full_ns, clock_ns, out, n, res = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
med = statistics.median
runs = [json.load(open(os.path.join(res, f".regcost-gateway-{i}.json")))["results"][0] for i in range(1, n + 1)]
# A counted run prints the mean thread CPU of a registration's two timed Core::handle calls;
# take off their two clock pairs, as from criterion's row.
sansio = []
for i in range(1, n + 1):
    text = open(os.path.join(res, f".regcost-sansio-{i}.txt")).read()
    sansio.append((float(re.search(r"core thread CPU (\d+) ns", text).group(1)) - 2 * clock_ns) / 1e3)
gw = runs[0]
core_runs = [r["core_cpu_us_per_registration"] for r in runs]
worker_runs = [r["worker_cpu_us_per_registration"] for r in runs]
ratios = [c / s for c, s in zip(core_runs, sansio)]
criterion_us = (full_ns - 2 * clock_ns) / 1e3
rows = [
    ("slowpath core, sans-IO (counted runs, paired)", med(sansio), 20.0),
    ("slowpath core in the in-process gateway", med(core_runs), 20.0),
    ("worker in the in-process gateway", med(worker_runs), 10.0),
]
print(f"{'CPU per full IMS-AKA registration':45} {'us':>8} {'target':>7}")
for name, us, target in rows:
    print(f"{name:45} {us:>8.1f} {target:>7.0f}")
print(f"gateway runs: worker {', '.join(f'{u:.1f}' for u in worker_runs)}; "
      f"core {', '.join(f'{u:.1f}' for u in core_runs)} (medians above)")
print(f"sans-IO runs paired with them: {', '.join(f'{u:.1f}' for u in sansio)}; criterion median "
      f"{criterion_us:.1f} us")
print(f"core in the gateway / sans-IO core, per pair: median {med(ratios):.3f} "
      f"(range {min(ratios):.2f}-{max(ratios):.2f}, {n} pairs)")
json.dump({"section": "regcost",
           "method": "thread CPU time (CLOCK_THREAD_CPUTIME_ID); sans-IO: counted runs "
                     "(AKG_REG_COUNT) of one registration's two Core::handle calls minus two "
                     "clock reads, each alternated with a gateway run; gateway figures over "
                     "the registration of N UEs, busy steps only; medians of the runs",
           "ues": gw["ues"],
           "sansio_criterion_us": criterion_us,
           "gateway_runs": {"worker_us": worker_runs, "core_us": core_runs, "sansio_us": sansio,
                            "core_over_sansio": ratios},
           "core_over_sansio_median": med(ratios),
           "results": [{"figure": n, "us_per_registration": u, "target_us": t} for n, u, t in rows]},
          open(out, "w"), indent=2)
PYEOF
    rm -f "$RESULTS"/.regcost-sansio-*.txt
    rm -f "$RESULTS"/.regcost-gateway-*.json
    echo "wrote $RESULTS/regcost.json"
}

# ---------------------------------------------------------------------------------------------
# SA lookup at scale (issue 11): the worker's inbound SA path (SPI table, the worker's SA
# slab, burst decapsulation, selector check: bench/benches/sa_path.rs, the worker's own types
# and calls) with SALOOKUP_SIZES installed SAs (1 Ki and 4 Mi; 4 Mi needs about 7 GB), bursts
# of 32 ESP packets with random SPIs, thread CPU time, SALOOKUP_RUNS (3) processes, each
# alternating the sizes' passes SALOOKUP_ROUNDS (200) times. The figure is the burst's cost at
# the largest size over its cost at the smallest, passes a few ms apart in the same process:
# the median over the rounds, then over the runs (goal: at most 1.5).
section_salookup() {
    local sizes=${SALOOKUP_SIZES:-1024,8192,4194304} runs=${SALOOKUP_RUNS:-3}
    local rounds=${SALOOKUP_ROUNDS:-200}
    echo "== salookup: cargo bench -p akagate-bench --bench sa_path, SA_PATH_PAIRED=$rounds" \
        "(SAs: $sizes, $runs runs)"
    local n r tag ns ratio args=() probe="$TARGET_DIR/tlbreach"
    : >"$RESULTS/salookup-criterion.log"
    # The machine's memory, measured apart from our code: a line's cost with few pages and
    # with one page per line (bench/baseline/tlbreach.c), so the ratio can be read against it.
    : >"$RESULTS/salookup-tlbreach.txt"
    if cc -O2 -Wall -o "$probe" "$ROOT/bench/baseline/tlbreach.c" >>"$RESULTS/salookup-criterion.log" 2>&1; then
        "$probe" >"$RESULTS/salookup-tlbreach.txt"
    fi
    # Round 20: each run alternates the sizes' passes in one process (SA_PATH_PAIRED, ABBA)
    # and reports each size's median per burst and its median ratio to the smallest over
    # the rounds, where criterion measured the sizes one after the other (runs' ratios
    # 1.38-2.84 in round 19 for the same code; docs/BENCHMARKS.md, round 20's SA lookup).
    for ((r = 1; r <= runs; r++)); do
        local out
        out=$(SA_PATH_PAIRED="$rounds" SA_PATH_SIZES="$sizes" cargo bench -p akagate-bench \
            --bench sa_path 2>>"$RESULTS/salookup-criterion.log") || {
            tail -n 30 "$RESULTS/salookup-criterion.log"
            return 1
        }
        # Lines `sa_path/paired <SAs> <ns per burst> <ratio to the smallest>`.
        while read -r tag n ns ratio; do
            [[ $tag == sa_path/paired ]] && args+=("$r" "$n" "$ns" "$ratio")
        done <<<"$out"
    done
    "$PY" - "$RESULTS/salookup.json" "$RESULTS/salookup-tlbreach.txt" "${args[@]}" <<'PYEOF'
import json, statistics, sys
out, probe_file, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
runs, ratio_of = {}, {}
for r, n, ns, ratio in zip(rest[::4], rest[1::4], rest[2::4], rest[3::4]):
    runs.setdefault(int(r), {})[int(n)] = float(ns)
    ratio_of.setdefault(int(r), {})[int(n)] = float(ratio)
sizes = sorted(next(iter(runs.values())))
base = sizes[0]
med = lambda xs: statistics.median(xs)
print(f"{'installed SAs':>14} {'ns per burst of 32 (median of runs)':>36} {'ns per packet':>14} {'x smallest, per run':>24}")
results = []
for n in sizes:
    per_run = [runs[r][n] for r in sorted(runs)]
    # Each run's ratio is the median of its rounds' ratios (passes a few ms apart).
    ratios = [ratio_of[r][n] for r in sorted(runs)]
    results.append({"sas": n, "ns_per_burst": med(per_run), "ns_per_packet": med(per_run) / 32,
                    "ns_per_burst_runs": per_run, "ratio_runs": ratios,
                    "ratio_to_smallest": med(ratios)})
    print(f"{n:>14,} {med(per_run):>36.0f} {med(per_run) / 32:>14.1f} "
          f"{' '.join(f'{x:.2f}' for x in ratios):>24}")
print(f"ratio (median of the runs' ratios): {results[-1]['ratio_to_smallest']:.2f}, goal at most 1.5")
probe = {"rows": []}
for line in open(probe_file):
    f = line.split()
    if f[:1] == ["anon_huge_kib"]:
        probe["anon_huge_kib"], probe["mapped_kib"] = int(f[1]), int(f[3])
    elif f[:1] == ["lines"]:
        probe["rows"].append({"lines": int(f[1]), "packed_ns": float(f[3]),
                              "spread_ns": float(f[5])})
    elif f[:1] == ["burst32"]:
        probe.setdefault("burst32", []).append({"lines_per_item": int(f[2]),
                                                "ns_per_item": float(f[4])})
    elif f[:1] == ["table_then_sa"]:
        probe["table_then_sa_ns_per_item"] = float(f[2])
if probe["rows"]:
    print(f"memory probe (tlbreach.c, {probe.get('anon_huge_kib', 0) >> 10} of "
          f"{probe.get('mapped_kib', 0) >> 10} MiB in huge pages), ns per dependent load:")
    print(f"{'lines':>8} {'packed':>8} {'one per 4 KiB page':>20}")
    for r in probe["rows"]:
        print(f"{r['lines']:>8,} {r['packed_ns']:>8.1f} {r['spread_ns']:>20.1f}")
    for b in probe.get("burst32", []):
        print(f"bursts of 32 random items of {b['lines_per_item']} line(s), all prefetched "
              f"first: {b['ns_per_item']:.1f} ns per item")
    if "table_then_sa_ns_per_item" in probe:
        print(f"bursts of 32 shaped like the SA path (a table line, then the six lines it "
              f"names): {probe['table_then_sa_ns_per_item']:.1f} ns per item")
json.dump({"section": "salookup",
           "memory_probe": probe,
           "method": "sa_path with SA_PATH_PAIRED: thread CPU time per burst of 32 "
                     "hmac-sha-1-96 + aes-cbc packets (64-byte inner) with random SPIs through "
                     "the worker's table, slab and burst decapsulation, per pass of 960 bursts "
                     "(after a cache flush and 64 warm-up bursts); each run alternates every "
                     "size's passes in one process (ABBA) and gives each size's median per "
                     "burst and the median of the rounds' ratios to the smallest size; "
                     "ratio = median over runs of those",
           "goal_ratio": 1.5, "runs": len(runs), "results": results}, open(out, "w"), indent=2)
PYEOF
    echo "wrote $RESULTS/salookup.json"
}

# ---------------------------------------------------------------------------------------------
# Slowpath shards (issue 10): SHARD_UES UEs register against the in-process daemon (memory
# backend, one worker) with 1 and then 2 slowpath shards; the figure is each slowpath
# thread's CPU time (procfs schedstat, not wall time) per registration it served. On this
# 2-core box the shards share the CPUs with the worker and the UE simulator, so the
# wall-clock rate says little; CPU per registration per shard is what scales with cores.
section_shards() {
    local ues=${SHARD_UES:-2000}
    echo "== shards: akabench --backend memory --slowpath-shards 1|2, $ues UEs (registration only)," \
        "unpinned and with the UEs on CPU 0, the daemon's threads on CPU 1"
    release_bins
    local work n
    work=$(mktemp -d)
    ./target/release/akactl subscribers --count "$ues" --out "$work/subscribers.toml" >/dev/null
    # Round 18 (issue 10): on a 2-core box the UE simulator (several times the daemon's CPU)
    # and the daemon's threads preempt each other when unpinned; a lab runs the generator on
    # its own core. The pinned rows are the daemon's reading; the unpinned ones are kept
    # (what earlier rounds printed). Pinning needs 2 CPUs.
    local pinned=()
    (($(nproc) >= 2)) && pinned=(--pin-ues 0 --pin-workers 1 --pin-slowpath 1)
    rm -f "$RESULTS"/shards-*.json "$RESULTS"/shards-*.log
    # Round 20: SHARD_RUNS (5) runs of every row, taken in turns (row 1, row 2, …, row 1, …),
    # and the median per figure: one run of this section read the slowpath thread 25–44 µs
    # for the same code on this VM (rounds 19–20), as its moments came (fsync above all).
    local runs=${SHARD_RUNS:-5} k
    for ((k = 1; k <= runs; k++)); do
        for n in 1 2; do
            akabench_run "shards-$n-r$k" "$work/subscribers.toml" "$ues" \
                --calls 0 --backend memory --slowpath-shards "$n"
            ((${#pinned[@]})) && akabench_run "shards-$n-pinned-r$k" "$work/subscribers.toml" \
                "$ues" --calls 0 --backend memory --slowpath-shards "$n" "${pinned[@]}"
        done
    done
    rm -rf "$work"
    "$PY" - "$RESULTS" "$runs" <<'PYEOF'
import json, os, statistics, sys
res, runs = sys.argv[1], int(sys.argv[2])
out = {"section": "shards", "note": "slowpath thread CPU (procfs schedstat) per registration; "
       "per shard: that shard's CPU over the registrations it served (IMPI hash, about half); "
       "'whole life' includes start-up and idle turns, 'reg phase' counts from the first "
       "REGISTER to the last registration's end; worker: all workers' thread CPU and "
       "busy-iteration clock over the registration phase, and its preemptions (involuntary "
       "context switches), yields and parks per registration; 'pinned': UEs on CPU 0, daemon threads on CPU 1; "
       "every figure is the median of the rows' runs, taken in turns (per-run figures in 'runs')",
       "results": []}
print(f"{'shards':6} {'placement':9} {'reg/s':>7} {'sp us/reg (whole life)':>22} {'sp us/reg (reg phase)':>21} "
      f"{'per shard us/reg':>18} {'worker cpu/busy us/reg':>22} {'w preempt/reg':>13} {'w yield/park/reg':>16}")

def figures(r, n):
    """One run's figures (akabench's report `r`, `n` shards)."""
    c, regs = r["pcscf_counters"], max(r["registered"], 1)
    per = [c.get(f"slowpath_cpu_us_shard{k}", 0) for k in range(n)] if n > 1 else [c.get("slowpath_cpu_us", 0)]
    return {"registered": r["registered"],
            "registrations_per_second": r["registrations_per_second"],
            "slowpath_cpu_us_per_registration": c.get("slowpath_cpu_us", 0) / regs,
            "slowpath_cpu_us_per_registration_reg_phase": c.get("slowpath_cpu_us_registration", 0) / regs,
            "worker_cpu_us_per_registration_reg_phase": c.get("worker_cpu_us_registration", 0) / regs,
            "worker_busy_us_per_registration_reg_phase": c.get("worker_busy_us_registration", 0) / regs,
            "worker_preemptions_per_registration": c.get("worker_preemptions_registration", 0) / regs,
            # Round 19: the idle policy's own counts (a bell-rung worker parks without yielding).
            "worker_yields_per_registration": c.get("worker_yields_registration", 0) / regs,
            "worker_parks_per_registration": c.get("worker_parks_registration", 0) / regs,
            # Each shard served about regs / n registrations.
            "per_shard_cpu_us": per, "per_shard_us_per_registration": [us / (regs / n) for us in per]}


for n in (1, 2):
    for place in ("unpinned", "pinned"):
        suffix = "" if place == "unpinned" else "-pinned"
        paths = [os.path.join(res, f"shards-{n}{suffix}-r{k}.json") for k in range(1, runs + 1)]
        per_run = [figures(json.load(open(p)), n) for p in paths if os.path.exists(p)]
        if not per_run:
            continue
        m = {key: statistics.median(f[key] for f in per_run)
             for key, v in per_run[0].items() if not isinstance(v, list)}
        for key in ("per_shard_cpu_us", "per_shard_us_per_registration"):
            m[key] = [statistics.median(f[key][i] for f in per_run) for i in range(len(per_run[0][key]))]
        shard = "  ".join(f"{u:.1f}" for u in m["per_shard_us_per_registration"])
        worker = (f"{m['worker_cpu_us_per_registration_reg_phase']:.1f} / "
                  f"{m['worker_busy_us_per_registration_reg_phase']:.1f}")
        idle = f"{m['worker_yields_per_registration']:.2f} / {m['worker_parks_per_registration']:.2f}"
        print(f"{n:6} {place:9} {m['registrations_per_second']:>7.0f} "
              f"{m['slowpath_cpu_us_per_registration']:>22.1f} "
              f"{m['slowpath_cpu_us_per_registration_reg_phase']:>21.1f} {shard:>18} {worker:>22} "
              f"{m['worker_preemptions_per_registration']:>13.2f} {idle:>16}")
        sp = " ".join(f"{f['slowpath_cpu_us_per_registration_reg_phase']:.1f}" for f in per_run)
        wk = " ".join(f"{f['worker_cpu_us_per_registration_reg_phase']:.1f}" for f in per_run)
        print(f"{'':16} runs: sp (reg phase) {sp}; worker cpu {wk}")
        out["results"].append({"shards": n, "placement": place, **m, "runs": per_run})
json.dump(out, open(os.path.join(res, "shards.json"), "w"), indent=2)
PYEOF
    echo "wrote $RESULTS/shards.json"
}

# ---------------------------------------------------------------------------------------------
# Proxy mode against embedded mode (issue 9): scripts/demo.sh registers PROXY_UES UEs through
# the real daemon on AF_PACKET (no calls, no de-registration), once with the embedded HSS and
# registrar (MODE=embedded) and once relaying every REGISTER to akacore, our S-CSCF + HSS
# (MODE=core). The figure to compare is the daemon threads' CPU time per registration (from
# /proc; the worker's includes its idle polling); the wall-clock rate is printed too but on a
# shared 2-core box it measures the neighbours as much as akagate. Needs root (skipped
# otherwise).
section_proxy() {
    echo "== proxy: scripts/demo.sh MODE=embedded|core UES=$PROXY_UES CALLS=0 DEREGISTER=0"
    if [[ $(id -u) != 0 ]]; then
        echo "   skipped: needs root (network namespaces)"
        return 0
    fi
    local m rc
    for m in embedded core; do
        rc=0
        MODE=$m UES=$PROXY_UES CALLS=0 DEREGISTER=0 REPORT="$RESULTS/proxy-$m-akabench.json" \
            ./scripts/demo.sh >"$RESULTS/proxy-$m.log" 2>&1 || rc=$?
        [[ $rc -ne 0 ]] && echo "   demo MODE=$m exited $rc (see $RESULTS/proxy-$m.log)"
    done
    "$PY" - "$RESULTS" <<'PYEOF'
import json, os, re, sys
res = sys.argv[1]
out = {"section": "proxy", "note": "daemon thread CPU microseconds per registration from "
       "/proc (utime+stime over the akabench run); core_link = akagate-core-* threads",
       "results": []}
print(f"{'mode':9} {'reg/s':>7} {'slowpath us/reg':>15} {'core link us/reg':>16} {'worker us/reg':>13}  failures")
for m in ("embedded", "core"):
    p = os.path.join(res, f"proxy-{m}.log")
    if not os.path.exists(p):
        continue
    text = open(p).read()
    rate = re.search(r"^registrations: (\d+) ok, (\d+) failed in [\d.]+ s \((\d+)/s\)", text, re.M)
    cpu = {}
    for name, us in re.findall(r"^\s+(\S+)\s+[\d.]+ s\s+([\d.]+) us per UE", text, re.M):
        key = "slowpath" if name.startswith("akagate-slowpat") else \
              "core_link" if name.startswith("akagate-core") else \
              "worker" if name.startswith("akagate-w") else "other"
        cpu[key] = cpu.get(key, 0.0) + float(us)
    ok, failed, per_s = (int(x) for x in rate.groups()) if rate else (0, -1, 0)
    print(f"{m:9} {per_s:>7} {cpu.get('slowpath', 0):>15.0f} {cpu.get('core_link', 0):>16.0f} "
          f"{cpu.get('worker', 0):>13.0f}  {failed}")
    out["results"].append({"mode": m, "registered": ok, "failures": failed,
                           "registrations_per_second": per_s, "cpu_us_per_registration": cpu})
json.dump(out, open(os.path.join(res, "proxy.json"), "w"), indent=2)
PYEOF
    echo "wrote $RESULTS/proxy.json (logs: $RESULTS/proxy-{embedded,core}.log)"
}

# ---------------------------------------------------------------------------------------------
# One table of every figure next to its reference (a baseline of the same run, or a goal), from
# the JSON files of this run (or the last run of a section not run now: the table says when
# each file was written): bench/summary.py writes bench/results/summary.json, bench/chart.py
# draws it as bench/results/summary.svg (ratios to the references, latency per transaction).
# Restart time with RESTART_N (100k) registrations (issue 14): the registration store opened,
# every record's ESP epoch advanced and fsynced, SPIs reserved, registrations restored into
# the core (the store-level part of "restored N registrations, ready"; release build).
section_restart() {
    local n=${RESTART_N:-100000}
    echo "== restart: $n stored registrations -> restored"
    AKAGATE_RESTART_N=$n cargo test --release -q -p akagate --lib restart_time -- --ignored \
        --nocapture 2>/dev/null | grep '^restart_time' | tee "$RESULTS/restart.txt"
}

# kill -9 in the middle of KILL9_UES (10k) registrations over UDP (issue 14): scripts/demo.sh
# with KILL9_AT at half; no stale challenge at any USIM, the files parse (needs root).
section_kill9() {
    local n=${KILL9_UES:-10000}
    echo "== kill9: $n UEs registering over UDP, SIGKILL at $((n / 2)) registrations"
    UES=$n CALLS=0 DEREGISTER=0 TRANSPORT=udp KILL9_AT=$((n / 2)) \
        REPORT="$RESULTS/kill9-akabench.json" scripts/demo.sh 2>&1 |
        grep -E '^demo:|registrations:|restored|stale|failures|  [a-z_]+: [0-9]+$' | tee "$RESULTS/kill9.txt"
}

# ---------------------------------------------------------------------------------------------
# Crypto baselines in one run (issue 11): our burst ESP (criterion esp_burst / esp_burst_decrypt,
# 32 hmac-sha-1-96 + aes-cbc packets over 4 SAs; the `gcm` ids the same bursts over 4 aes-gcm-16
# SAs) beside
# intel-ipsec-mb driven like dpdk-test-crypto-perf's throughput test (bench/baseline/ipsecmb.c:
# bursts of 32 on libIPSec_MB, the library under DPDK's crypto_aesni_mb PMD, called directly,
# each case through its fastest path: CBC + HMAC its burst API, GCM its direct GCM API), and
# our single packet beside
# `openssl speed -evp aes-128-cbc-hmac-sha1`. Sizes 64 and 1408 bytes. All three count CPU
# time, not wall time, so the ratios compare like with like on a loaded box: criterion through
# `bench/benches/cpu_time` (the bench thread's CLOCK_THREAD_CPUTIME_ID), ipsecmb.c its thread's
# CLOCK_THREAD_CPUTIME_ID, `openssl speed` its user time (its default without -elapsed).
# crypto_perf_runs DIR: DPDK's own driver of intel-ipsec-mb, dpdk-test-crypto-perf's throughput
# test on the crypto_aesni_mb PMD (Debian's dpdk-dev; librte-crypto-ipsec-mb), bursts of 32 on
# one worker lcore (lcore 1; lcore 0 launches it and waits). Prints "<alg> <direction> <size>
# <ns per op>" per case. HMAC verification needs a digest to check, so decryption reads a
# vector file (random key, IV and ciphertext, their HMAC-SHA-1-96) written here; GCM's tag
# check fails on the tool's data, which costs what a passing check costs. Wall time of a
# polling lcore: meaningful on a quiet box only (the section prints the load average).
crypto_perf_runs() {
    local dir=$1 size op line
    local eal=(-l 0,1 --no-huge -m 512 --no-pci --vdev crypto_aesni_mb0 --log-level='lib.*:warning')
    local common=(--ptest throughput --devtype crypto_aesni_mb --burst-sz 32
        --total-ops "${CRYPTO_PERF_OPS:-2000000}" --csv-friendly)
    local cbc=(--cipher-algo aes-cbc --cipher-key-sz 16 --cipher-iv-sz 16 --auth-algo sha1-hmac
        --auth-key-sz 20 --digest-sz 12)
    local gcm=(--optype aead --aead-algo aes-gcm --aead-key-sz 16 --aead-iv-sz 12 --aead-aad-sz 8
        --digest-sz 16)
    for size in 64 1408; do
        "$PY" - "$size" >"$dir/cbc-$size.data" <<'PYEOF'
import hashlib, hmac, random, sys
n = int(sys.argv[1])
rnd = random.Random(n)
b = lambda k: bytes(rnd.randrange(256) for _ in range(k))
def field(name, data):
    vals = [f"0x{x:02x}" for x in data]
    print(f"{name} =\n" + ",\n".join(", ".join(vals[i:i + 16]) for i in range(0, len(vals), 16)) + "\n")
ckey, akey, iv, ct = b(16), b(20), b(16), b(n)
field("plaintext", b(n))
field("ciphertext", ct)
field("cipher_key", ckey)
field("auth_key", akey)
field("cipher_iv", iv)
field("digest", hmac.new(akey, ct, hashlib.sha1).digest()[:12])
PYEOF
        for op in "cbc encrypt" "cbc decrypt" "gcm encrypt" "gcm decrypt"; do
            local args=()
            case $op in
            "cbc encrypt") args=("${cbc[@]}" --optype cipher-then-auth --cipher-op encrypt --auth-op generate) ;;
            "cbc decrypt") args=("${cbc[@]}" --optype auth-then-cipher --cipher-op decrypt --auth-op verify
                --test-file "$dir/cbc-$size.data") ;;
            "gcm encrypt") args=("${gcm[@]}" --aead-op encrypt) ;;
            "gcm decrypt") args=("${gcm[@]}" --aead-op decrypt) ;;
            esac
            line=$(timeout 120 dpdk-test-crypto-perf "${eal[@]}" -- "${common[@]}" --buffer-sz "$size" \
                "${args[@]}" 2>>"$dir/crypto-perf.log" | grep '^1,' | tail -n 1) || true
            # lcore,size,burst,enq,deq,failed enq,failed deq,Mops,Gbps,cycles per buffer
            [[ -n $line ]] && awk -F, -v op="$op" -v size="$size" '{ printf "%s %s %.1f\n", op, size, 1000 / $8 }' <<<"$line"
        done
    done
}

# crypto_criterion LOG FILTER: the esp bench's rows matching FILTER, short runs (the crypto
# section's), output in $RESULTS/LOG.log; nothing when BENCH_REUSE is set.
crypto_criterion() {
    [[ -n ${BENCH_REUSE:-} ]] && return 0
    cargo bench -p akagate-bench --bench esp -- --warm-up-time 1 --measurement-time 2 "$2" \
        >"$RESULTS/$1.log" 2>&1 || {
        tail -n 30 "$RESULTS/$1.log"
        return 1
    }
}

# crypto_host: the CPU's model name, family/model/stepping and flags line (/proc/cpuinfo's
# first processor), for the crypto result files.
crypto_host() {
    awk -F': *' '/^model name/ && !m {m=$2} /^cpu family/ && !f {f=$2} /^model\t/ && !o {o=$2}
        /^stepping/ && !s {s=$2} /^flags/ && !l {l=$2}
        END {printf "cpu: %s (family %s model %s stepping %s)\nflags: %s\n", m, f, o, s, l}' \
        /proc/cpuinfo
}

section_crypto() {
    echo "== crypto: burst ESP vs intel-ipsec-mb, single packet vs OpenSSL (64 and 1408 B)"
    # The host the figures come from: which kernels run depends on the CPU (a Zen 3 has
    # VAES on 256-bit registers only, a Zen 4 AVX-512), so each result file says it.
    crypto_host >"$RESULTS/crypto-host.txt"
    sed 's/^/   /' "$RESULTS/crypto-host.txt"
    local bin="$TARGET_DIR/ipsecmb-baseline"
    if ! cc -O2 -Wall -o "$bin" "$ROOT/bench/baseline/ipsecmb.c" -lIPSec_MB \
        >"$RESULTS/crypto-build.log" 2>&1; then
        echo "   skipped: cannot build bench/baseline/ipsecmb.c (libipsec-mb-dev?)"
        cat "$RESULTS/crypto-build.log"
        return 0
    fi
    crypto_criterion crypto-criterion \
        '^esp_burst(_decrypt)?/(mb|gcm)/(64|1408)$|^esp_(en|de)crypt/(sha1_aescbc|aesgcm)/(64|1408)$' ||
        return 1
    "$bin" "${IPSECMB_SECONDS:-2}" >"$RESULTS/crypto-ipsecmb.txt"
    local cp_dir=""
    if command -v dpdk-test-crypto-perf >/dev/null; then
        cp_dir=$(mktemp -d)
    else
        echo "   dpdk-test-crypto-perf not installed (apt-get install dpdk-dev); its rows are left out"
    fi
    # OpenSSL doing the whole ESP packet (full HMAC-SHA-1-96, padding, trailer), and its
    # stitched cipher sealing whole TLS records: the like-for-like single-packet baselines
    # beside `openssl speed`'s stitched cipher, which without a TLS header only feeds a
    # running SHA-1 (bench/baseline/openssl_esp.c).
    local ossl_esp="$TARGET_DIR/openssl-esp-baseline"
    if cc -O2 -Wall -o "$ossl_esp" "$ROOT/bench/baseline/openssl_esp.c" -lcrypto \
        >>"$RESULTS/crypto-build.log" 2>&1; then
        "$ossl_esp" "${OPENSSL_SECONDS:-2}" >"$RESULTS/crypto-openssl-esp.txt"
    else
        echo "   openssl_esp.c did not build (libssl-dev?); its rows are left out"
        : >"$RESULTS/crypto-openssl-esp.txt"
    fi
    echo "   load average after the criterion and ipsecmb runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    local rows=() size dir
    for size in 64 1408; do
        rows+=("ours burst-cbc encrypt $size $(criterion_ns esp_burst mb "$size")")
        rows+=("ours burst-cbc decrypt $size $(criterion_ns esp_burst_decrypt mb "$size")")
        rows+=("ours burst-gcm encrypt $size $(criterion_ns esp_burst gcm "$size")")
        rows+=("ours burst-gcm decrypt $size $(criterion_ns esp_burst_decrypt gcm "$size")")
        for dir in encrypt decrypt; do
            rows+=("ours single-cbc $dir $size $(criterion_ns "esp_$dir" sha1_aescbc "$size")")
            rows+=("ours single-gcm $dir $size $(criterion_ns "esp_$dir" aesgcm "$size")")
        done
    done
    # The goals against the issue's own baselines in alternated pairs: our single-packet and
    # burst rows, then `openssl speed`'s four figures and dpdk-test-crypto-perf's eight,
    # CRYPTO_PAIRS times, so that a drift of the host between two moments does not become the
    # ratio; the JSON keeps the median ratio of the pairs, its range and each pair.
    local pair
    rm -f "$RESULTS"/crypto-perf-*.txt "$RESULTS"/crypto-single-*.log
    for ((pair = 1; pair <= ${CRYPTO_PAIRS:-3}; pair++)); do
        crypto_criterion "crypto-pair-$pair" \
            '^esp_(en|de)crypt/sha1_aescbc/(64|1408)$|^esp_burst(_decrypt)?/(mb|gcm)/(64|1408)$' ||
            return 1
        for size in 64 1408; do
            for dir in encrypt decrypt; do
                rows+=("pair$pair single-cbc $dir $size $(criterion_ns "esp_$dir" sha1_aescbc "$size")")
            done
            rows+=("pair$pair burst-cbc encrypt $size $(criterion_ns esp_burst mb "$size")")
            rows+=("pair$pair burst-cbc decrypt $size $(criterion_ns esp_burst_decrypt mb "$size")")
            rows+=("pair$pair burst-gcm encrypt $size $(criterion_ns esp_burst gcm "$size")")
            rows+=("pair$pair burst-gcm decrypt $size $(criterion_ns esp_burst_decrypt gcm "$size")")
            rows+=("openssl$pair single-cbc encrypt $size $(openssl_bytes_per_s aes-128-cbc-hmac-sha1 "$size")")
            rows+=("openssl$pair single-cbc decrypt $size $(openssl_bytes_per_s aes-128-cbc-hmac-sha1 "$size" -decrypt)")
        done
        if [[ -n $cp_dir ]]; then
            crypto_perf_runs "$cp_dir" >"$RESULTS/crypto-perf-$pair.txt"
            [[ -s $RESULTS/crypto-perf-$pair.txt ]] ||
                echo "   dpdk-test-crypto-perf gave no figures in pair $pair (see $RESULTS/crypto-perf.log)"
        fi
    done
    if [[ -n $cp_dir ]]; then
        cp "$cp_dir/crypto-perf.log" "$RESULTS/crypto-perf.log" 2>/dev/null || true
        rm -rf "$cp_dir"
    fi
    printf '%s\n' "${rows[@]}" >"$RESULTS/.crypto-rows"
    "$PY" - "$RESULTS/.crypto-rows" "$RESULTS/crypto-ipsecmb.txt" "$RESULTS/crypto.json" \
        "$RESULTS/crypto-openssl-esp.txt" "$RESULTS"/crypto-perf-*.txt <<'PYEOF'
import json, re, sys
ours, mb = {}, {}
ossl_esp, ossl_tls = {}, {}
# (kind, d, size) -> {pair: [ours ns, baseline ns]}: kind "single-cbc" against openssl speed,
# "burst-cbc"/"burst-gcm" against dpdk-test-crypto-perf.
pairs = {}
for path in sys.argv[5:]:
    n = re.search(r"crypto-perf-(\d+)\.txt$", path).group(1)
    for line in open(path):
        alg, d, size, ns = line.split()
        pairs.setdefault((f"burst-{alg}", d, int(size)), {}).setdefault(n, [None, None])[1] = float(ns)
for line in open(sys.argv[4]):
    who, d, size, ns, _gbps = line.split()
    (ossl_tls if who == "openssl-tls" else ossl_esp)[(d, int(size))] = float(ns)
for line in open(sys.argv[1]):
    who, kind, d, size, *v = line.split()
    if not v:
        continue
    key = (kind, d, int(size))
    if who.startswith("openssl"):
        pairs.setdefault(key, {}).setdefault(who[7:], [None, None])[1] = int(size) * 1e9 / float(v[0])
        continue
    ns = float(v[0]) / (32 if kind.startswith("burst") else 1)
    if who == "ours":
        ours[key] = ns
    else:
        pairs.setdefault(key, {}).setdefault(who[4:], [None, None])[0] = ns
median = lambda xs: sorted(xs)[len(xs) // 2] if len(xs) % 2 else sum(sorted(xs)[len(xs) // 2 - 1:len(xs) // 2 + 1]) / 2
for line in open(sys.argv[2]):
    _, alg, d, size, ns, gbps, arch = line.split()
    mb[("gcm" if "gcm" in alg else "cbc", d, int(size))] = (float(ns), arch)
gbps = lambda size, ns: size * 8 / ns
rows = []
print(f"{'case':<50} {'ours ns/pkt':>11} {'Gbps':>6} {'baseline ns':>11} {'Gbps':>6} {'ratio':>6}")
def paired(case, key):
    """A row from alternated pairs: the median of the pairs' ratios, its range, each pair."""
    done = [p for p in pairs.get(key, {}).values() if None not in p]
    if not done:
        return
    ratios = [b / o for o, b in done]
    rows.append({"case": case, "ours_ns": median([o for o, _ in done]),
                 "baseline_ns": median([b for _, b in done]), "ratio": median(ratios),
                 "pairs": [{"ours_ns": o, "baseline_ns": b} for o, b in done],
                 "ratio_range": [min(ratios), max(ratios)]})
for size in (64, 1408):
    for d in ("encrypt", "decrypt"):
        for alg, kind in (("cbc", "burst-cbc"), ("gcm", "burst-gcm")):
            paired(f"burst {alg} {d} {size} B vs dpdk crypto-perf aesni_mb", (kind, d, size))
            o = ours.get((kind, d, size)); b = mb.get((alg, d, size))
            if o is None or b is None:
                continue
            name = f"burst {alg} {d} {size} B vs ipsec-mb ({b[1]})"
            rows.append({"case": name, "ours_ns": o, "baseline_ns": b[0], "ratio": b[0] / o})
        paired(f"single cbc {d} {size} B vs openssl stitched", ("single-cbc", d, size))
        o = ours.get(("single-cbc", d, size))
        b = ossl_esp.get((d, size))
        if o is not None and b:
            rows.append({"case": f"single cbc {d} {size} B vs openssl full ESP", "ours_ns": o,
                         "baseline_ns": b, "ratio": b / o})
        b = ossl_tls.get((d, size))
        if o is not None and b:
            rows.append({"case": f"single cbc {d} {size} B vs openssl stitched TLS", "ours_ns": o,
                         "baseline_ns": b, "ratio": b / o})
for r in rows:
    size = int(r["case"].split(" B ")[0].split()[-1])
    print(f"{r['case']:<50} {r['ours_ns']:>11.1f} {gbps(size, r['ours_ns']):>6.2f} "
          f"{r['baseline_ns']:>11.1f} {gbps(size, r['baseline_ns']):>6.2f} {r['ratio']:>6.2f}")
print("ratio: baseline time / ours (above 1.0: ours faster); goals: burst >= 1.0, single >= 0.8")
print("'vs dpdk crypto-perf' and 'vs openssl stitched': median of alternated pairs (ours, then the")
print("baselines, CRYPTO_PAIRS times):")
for r in rows:
    if "ratio_range" in r:
        print(f"  {r['case']}: {len(r['pairs'])} pairs, ratios {r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f}")
print("'dpdk crypto-perf aesni_mb' is dpdk-test-crypto-perf's throughput test on the crypto_aesni_mb PMD")
print("(wall time of its polling lcore); 'ipsec-mb' the same library called directly (bench/baseline/ipsecmb.c)")
print("'openssl stitched' is `openssl speed -evp aes-128-cbc-hmac-sha1`: without a TLS header it only")
print("feeds a running SHA-1 (no HMAC finalisation, no MAC); 'openssl full ESP' does the packet's work")
print("with OpenSSL's AES-CBC and SHA-1; 'openssl stitched TLS' is the same stitched cipher sealing or")
print("opening whole TLS 1.2 records (AAD per record, HMAC finalised and checked; bench/baseline/openssl_esp.c)")
json.dump({"section": "crypto",
           "method": "criterion with the bench thread's CLOCK_THREAD_CPUTIME_ID (median), "
                     "ipsecmb.c its thread's CPU time, openssl speed its user time, "
                     "dpdk-test-crypto-perf (throughput test, crypto_aesni_mb PMD, bursts of "
                     "32) the wall time of its polling worker lcore",
           "loadavg": open("/proc/loadavg").read().split()[:3],
           "host": dict(l.rstrip("\n").split(": ", 1) for l in open(sys.argv[3].replace("crypto.json", "crypto-host.txt")) if ": " in l),
           "results": rows}, open(sys.argv[3], "w"), indent=1)
PYEOF
    echo "wrote $RESULTS/crypto.json"
}

section_summary() {
    echo "== summary (bench/results/*.json)"
    "$PY" "$ROOT/bench/summary.py" "$RESULTS"
    local latency=()
    [[ -f $RESULTS/e2e.json ]] && latency=(--latency "$RESULTS/e2e.json")
    "$PY" "$ROOT/bench/chart.py" "$RESULTS/summary.json" "${latency[@]}" -o "$RESULTS/summary.svg"
    echo "wrote $RESULTS/summary.json and $RESULTS/summary.svg"
}

SECTIONS=(esp crypto)
SECTIONS+=(io)
SECTIONS+=(e2e pktgen mem regcost salookup shards proxy restart summary)

want=("$@")
[[ ${#want[@]} -eq 0 ]] && want=("${SECTIONS[@]}")
for s in "${want[@]}"; do
    if ! declare -F "section_$s" >/dev/null; then
        echo "unknown section '$s' (have: ${SECTIONS[*]})" >&2
        exit 2
    fi
    "section_$s"
done
