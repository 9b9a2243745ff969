#!/usr/bin/env python3
"""The `summary` section of `make bench`: every headline figure next to its reference.

Reads the section files bench/run.sh wrote (esp, crypto, io, pktgen, e2e, mem, regcost,
salookup .json in RESULTS),
prints one table and writes RESULTS/summary.json; bench/chart.py draws it as summary.svg.

Each row is one figure. Its reference is a baseline measured in the same run (OpenSSL, raw
AF_PACKET) when there is one, otherwise a goal from GOALS below. `ratio` is the figure over
its reference, inverted for figures where lower is better, so above 1.0 is always better.

Usage: summary.py RESULTS_DIR
"""

import json
import os
import sys
import time

from chart import num

# Goals for the figures that have no baseline in the same run. They are sizing targets, not
# measurements: change them here and the table, summary.json and the chart follow.
REG_GOAL = 100_000 / 60
CALL_GOAL = 1_000.0
GOALS = {
    "registrations": (REG_GOAL, "goal: 100k UEs re-register within 60 s of a restart"),
    "calls": (CALL_GOAL, "goal: 3.6 M busy-hour call attempts"),
    "protected_sip": (2 * REG_GOAL + 12 * CALL_GOAL,
                      "goal: the SIP of the registration and call goals"),
    "framed_per_core": (500_000.0, "goal of issue 11"),
    "memory_per_ue_kib": (16.0, "goal: 1 M UEs in 16 GiB"),
    "sa_lookup_ratio": (1.5, "goal: at 4 Mi SAs"),
}

SECTION_ESP = "ESP crypto, one core (criterion vs openssl speed)"
SECTION_CRYPTO = "ESP crypto, issue 11's baselines (crypto section)"
SECTION_IO = "Packet I/O, veth (io bench)"
SECTION_FAST = "Fast path, one worker core (akapktgen)"
SECTION_E2E = "End to end (akabench)"
SECTION_MEM = "Memory (mem bench)"
SECTION_REG = "CPU per full IMS-AKA registration (regcost)"
SECTION_SA = "SA lookup, one worker core (sa_path bench)"


def row(section, figure, ours, unit, written, baseline=None, source="", also=(),
        lower_is_better=False):
    """One summary row; `also` lists (value, unit) pairs of the same measurement."""
    ratio = None
    if baseline:
        ratio = baseline / ours if lower_is_better else ours / baseline
    return {"section": section, "figure": figure, "ours": ours, "unit": unit,
            "baseline": baseline, "baseline_source": source, "ratio": ratio,
            "lower_is_better": lower_is_better,
            "also": [{"value": v, "unit": u} for v, u in also], "written": written}


def goal_row(section, figure, ours, unit, written, goal, **kw):
    """A row whose reference is an entry of GOALS."""
    value, source = GOALS[goal]
    return row(section, figure, ours, unit, written, value, source, **kw)


def load(res, name):
    """A section file and the time it was written, or (None, None) when it is missing."""
    p = os.path.join(res, name + ".json")
    if not os.path.exists(p):
        return None, None
    with open(p) as f:
        return json.load(f), time.strftime("%H:%M", time.localtime(os.path.getmtime(p)))


def esp_rows(res):
    """Multi-buffer ESP against OpenSSL, 64 and 1408 bytes (the single-packet rows are the
    crypto section's, measured in alternated pairs: see `crypto_rows`)."""
    esp, t = load(res, "esp")
    if not esp:
        return []
    out = []
    for r in esp.get("burst_results", []):
        if r["variant"] != "mb" or r["payload_bytes"] not in (64, 1408):
            continue
        base, src = r.get("openssl_mb_gbps"), "OpenSSL -mb"
        if base is None:
            base, src = r["openssl_gbps"], "OpenSSL stitched"
        out.append(row(SECTION_ESP,
                       f"{r['direction']} bursts of 32, multi-buffer, {r['payload_bytes']} B",
                       r["gbps"], "Gbps", t, base, src, also=[(r["mpps"], "Mpps")]))
    return out


def crypto_rows(res):
    """Issue 11's crypto goals: bursts of 32 against `dpdk-test-crypto-perf` on the
    crypto_aesni_mb PMD, one packet against `openssl speed`'s stitched cipher, each the median
    of alternated pairs, from the crypto section (time per packet, lower is better)."""
    crypto, t = load(res, "crypto")
    if not crypto:
        return []
    out = []
    for r in crypto["results"]:
        case = r["case"]
        if case.endswith("vs dpdk crypto-perf aesni_mb"):
            source = "crypto-perf, aesni_mb PMD" + (" (pairs)" if "pairs" in r else "")
        elif case.endswith("vs openssl stitched"):
            source = "openssl speed, stitched (pairs)"
        else:
            continue
        out.append(row(SECTION_CRYPTO, case.split(" vs ")[0], r["ours_ns"], "ns/packet", t,
                       r["baseline_ns"], source, lower_is_better=True))
        if "pairs" in r:
            # Alternated pairs: the median of the pairs' ratios, not the ratio of the medians.
            out[-1]["ratio"] = r["ratio"]
    return out


def best_af_packet_rx(io):
    """Highest raw AF_PACKET receive rate per frame size, in Mpps."""
    best = {}
    for r in io["results"]:
        if r["backend"] == "af_packet":
            best[r["frame_bytes"]] = max(best.get(r["frame_bytes"], 0.0), r["rx_pps"] / 1e6)
    return best


def io_rows(res):
    """DPDK net_af_packet against raw AF_PACKET; also returns the raw rates per size."""
    io, t = load(res, "io")
    if not io:
        return [], {}
    best = best_af_packet_rx(io)
    out = []
    for r in io["results"]:
        if r["backend"] != "dpdk":
            continue
        way = r["path"].split(":")[0]
        out.append(row(SECTION_IO, f"DPDK net_af_packet {way}, {r['frame_bytes']} B frames",
                       r["rx_pps"] / 1e6, "Mpps", t, best.get(r["frame_bytes"]),
                       "raw AF_PACKET rx"))
    return out, best


def pktgen_rows(res, io_best):
    """The fast path per worker core: ESP in against raw AF_PACKET, framed SIP against a goal."""
    pk, t = load(res, "pktgen")
    if not pk:
        return []
    out = []
    for r in pk["results"]:
        if "pairs" in r:
            # Raw rx taken in alternated pairs with these runs: the median of the pairs'
            # ratios, not the ratio of the medians.
            base, source = r["raw_af_packet_rx_mpps"], "raw AF_PACKET rx (pairs)"
        else:
            base = io_best.get(64 if r["size"] == 64 else 1400)
            source = "raw AF_PACKET rx" if base else ""
        out.append(row(SECTION_FAST, f"ESP in, {r['size']} B inner", r["mpps_per_core"], "Mpps",
                       t, base, source, also=[(r["gbps_per_core"], "Gbps")]))
        if "pairs" in r:
            out[-1]["ratio"] = r["ratio_vs_raw_rx"]
    # Issue 11's goal is for 1 KiB messages in full-size segments; with 64-B segments each
    # message takes some twenty packets, so that figure stays in pktgen.json, out of the
    # summary (every row of which has a reference).
    return out + [goal_row(SECTION_FAST, f"protected SIP framed, {r['size']} B segments",
                           r["sip_per_core_second"], "msg/core-s", t, "framed_per_core")
                  for r in pk["results"] if r["size"] >= 1024]


# e2e figures: (name, key in e2e.json, unit, goal).
E2E_FIGURES = [
    ("registrations", "registrations_per_second", "reg/s", "registrations"),
    ("calls", "calls_per_second", "calls/s", "calls"),
    ("protected SIP messages", "protected_sip_per_second", "msg/s", "protected_sip"),
]


def e2e_rows(res):
    """akabench's rates per backend against the goals."""
    e2e, t = load(res, "e2e")
    if not e2e:
        return []
    return [goal_row(SECTION_E2E, f"{name} ({r['backend']})", r[key], unit, t, goal)
            for r in e2e["results"] for name, key, unit, goal in E2E_FIGURES]


def mem_rows(res):
    """Heap per registered UE against a goal (lower is better)."""
    mem, t = load(res, "mem")
    if not mem:
        return []
    return [goal_row(SECTION_MEM, f"heap per registered UE at {r['ues']:,} UEs",
                     r["bytes_per_ue"] / 1024, "KiB/UE", t, "memory_per_ue_kib",
                     also=[(r["fixed_bytes_per_ue_slot"] / 1024, "KiB/slot preallocated")],
                     lower_is_better=True)
            for r in mem["results"]]


def regcost_rows(res):
    """Slowpath and worker CPU per registration against their targets (lower is better)."""
    reg, t = load(res, "regcost")
    if not reg:
        return []
    return [row(SECTION_REG, r["figure"], r["us_per_registration"], "us", t, r["target_us"],
                "goal: issue 10", lower_is_better=True)
            for r in reg["results"]]


def salookup_rows(res):
    """The SA path's cost at the largest table over the smallest (lower is better)."""
    sa, t = load(res, "salookup")
    if not sa or len(sa["results"]) < 2:
        return []
    small, large = sa["results"][0], sa["results"][-1]
    return [goal_row(SECTION_SA, f"burst at {large['sas']:,} SAs over {small['sas']:,}",
                     large["ratio_to_smallest"], "x", t, "sa_lookup_ratio",
                     also=[(large["ns_per_packet"], "ns/packet"),
                           (small["ns_per_packet"], f"ns at {small['sas']:,}")],
                     lower_is_better=True)]


def main():
    """Prints the table and writes RESULTS/summary.json."""
    res = sys.argv[1]
    io, io_best = io_rows(res)
    rows = (esp_rows(res) + crypto_rows(res) + io + pktgen_rows(res, io_best) + e2e_rows(res) + mem_rows(res)
            + regcost_rows(res) + salookup_rows(res))
    print(f"{'figure':46} {'ours':>16} {'reference':>16} {'ratio':>6}  {'reference source':34} {'at':>5}")
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"-- {section}")
        ours = f"{num(r['ours'])} {r['unit']}"
        ref = f"{num(r['baseline'])} {r['unit']}" if r["baseline"] else ""
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        print(f"{r['figure']:46} {ours:>16} {ref:>16} {ratio:>6}  {r['baseline_source']:34} "
              f"{r['written']:>5}")
    with open(os.path.join(res, "summary.json"), "w") as f:
        json.dump({"section": "summary",
                   "note": "ratio = ours / baseline (baseline / ours when lower_is_better): "
                           "above 1 is better; a baseline_source starting with 'goal:' is a "
                           "target from bench/summary.py, the others were measured in the "
                           "same run",
                   "rows": rows}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
