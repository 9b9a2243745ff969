#!/usr/bin/env bash
# A/B of the fast path on one box: runs two akapktgen binaries (a baseline and a candidate,
# e.g. built from two commits) interleaved, ROUNDS times each, at 64 and 1408 bytes, and
# prints the median per-worker-core figures of each, with OpenSSL's single-packet
# `aes-128-cbc-hmac-sha1` (and `aes-128-gcm` with EALG=aes-gcm) measured in the same run.
# Interleaving makes both see the same load on a shared machine.
#
#   bench/pktgen_ab.sh BASE_BIN NEW_BIN [ROUNDS]
# Environment: UES (64), PKTS_64 (4000), PKTS_1408 (1000), EALG (aes-cbc; or aes-gcm, null),
# OUT (a temporary directory) keeps the akapktgen reports.
set -euo pipefail

base=${1:?usage: pktgen_ab.sh BASE_BIN NEW_BIN [ROUNDS]}
new=${2:?usage: pktgen_ab.sh BASE_BIN NEW_BIN [ROUNDS]}
rounds=${3:-5}
ues=${UES:-64}
ealg=${EALG:-aes-cbc}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

for ((i = 1; i <= rounds; i++)); do
    for v in base new; do
        bin=$base
        [[ $v == new ]] && bin=$new
        for size in 64 1408; do
            pkts=${PKTS_64:-4000}
            [[ $size == 1408 ]] && pkts=${PKTS_1408:-1000}
            # A run with drops (e.g. the event queue full when the worker outruns the
            # slowpath) exits 1 but still writes its report; the summary counts the drops.
            "$bin" --ues "$ues" --size "$size" --packets-per-ue "$pkts" --sip-bytes 1024 \
                --ealg "$ealg" --quiet --report "$out/$v-$size-$i.json" >/dev/null || true
        done
    done
done

cipher=aes-128-cbc-hmac-sha1
[[ $ealg == aes-gcm ]] && cipher=aes-128-gcm
declare -A ossl
for size in 64 1408; do
    ossl[$size]=$(openssl speed -mr -seconds 3 -bytes "$size" -evp "$cipher" 2>/dev/null |
        awk -F: '/^\+F:/ { print $4 }' | tail -n 1)
done

/usr/bin/python3 - "$out" "$rounds" "$cipher" "${ossl[64]}" "${ossl[1408]}" <<'PYEOF'
import json, statistics as st, sys
out, rounds, cipher = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ossl = {64: float(sys.argv[4] or 0), 1408: float(sys.argv[5] or 0)}
print(f"{'size':>5} {'binary':>6} {'ns/pkt':>7} {'Mpps/core':>9} {'Gbps/core':>9} "
      f"{'SIP msg/s/core':>14} {'drops':>6}  runs (ns/pkt)")
for size in (64, 1408):
    med = {}
    for v in ("base", "new"):
        g = [json.load(open(f"{out}/{v}-{size}-{i}.json"))["gateway"] for i in range(1, rounds + 1)]
        ns = [x["ns_per_packet"] for x in g]
        m = st.median(ns)
        med[v] = m
        sip = st.median(x["sip_in"] / x["worker_busy_seconds"] for x in g)
        gbps = st.median(x["gbps_per_core"] for x in g)
        drops = sum(sum(x["drops"].values()) for x in g)
        print(f"{size:>5} {v:>6} {m:>7.0f} {1e3 / m:>9.3f} {gbps:>9.2f} {sip:>14.0f} {drops:>6}  "
              + " ".join(f"{x:.0f}" for x in ns))
    print(f"{size:>5} new/base speed-up {med['base'] / med['new']:.2f}x; "
          f"openssl speed -evp {cipher} -bytes {size}: {ossl[size] * 8 / 1e9:.2f} Gbps")
PYEOF
