#!/usr/bin/env python3
"""Tests of bench/summary.py and bench/chart.py on the committed bench/results files.

Run: python3 -m unittest discover -s bench -p 'test_*.py'   (part of `make test`)
"""

import json
import os
import re
import statistics
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

BENCH = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(BENCH, "results")
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, BENCH)
import chart  # noqa: E402  (the module under test, next to this file)

NS = "{http://www.w3.org/2000/svg}"


def run_chart(summary_path, *extra):
    """chart.py's output for a summary file, parsed; fails the test on a non-zero exit."""
    out = subprocess.run([sys.executable, os.path.join(BENCH, "chart.py"), summary_path, *extra],
                         check=True, capture_output=True, text=True).stdout
    return ET.fromstring(out)


def texts(svg):
    return [t for t in svg.iter(NS + "text")]


def box(t):
    """Estimated bounding box of a <text> element (the estimate chart.py lays out with)."""
    x, y, size = float(t.get("x")), float(t.get("y")), float(t.get("font-size"))
    w = chart.text_width(t.text, size)
    x0 = {"start": x, "middle": x - w / 2, "end": x - w}[t.get("text-anchor")]
    return x0, y - size * 0.8, x0 + w, y + size * 0.2


def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class CommittedSummary(unittest.TestCase):
    """The chart of the committed summary.json and e2e.json."""

    @classmethod
    def setUpClass(cls):
        cls.summary_path = os.path.join(RESULTS, "summary.json")
        with open(cls.summary_path) as f:
            cls.rows = json.load(f)["rows"]
        cls.svg = run_chart(cls.summary_path, "--latency", os.path.join(RESULTS, "e2e.json"))

    def test_well_formed_svg_with_its_size(self):
        self.assertEqual(self.svg.tag, NS + "svg")
        width, height = float(self.svg.get("width")), float(self.svg.get("height"))
        for t in texts(self.svg):
            x0, y0, x1, y1 = box(t)
            self.assertTrue(0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height, t.text)

    def test_every_figure_has_a_bar_and_its_values_with_units(self):
        self.assertGreater(len(self.rows), 10)
        strings = [t.text for t in texts(self.svg)]
        for r in self.rows:
            self.assertIn(r["figure"], strings)
            line = chart.detail(r)
            self.assertIn(line, strings)
            self.assertIn(f" {r['unit']}", line)
            self.assertIsNotNone(chart.ratio_of(r), r["figure"])
            self.assertIn(f"{chart.ratio_of(r):.2f}x", " ".join(strings))
        bars = [b for b in self.svg.iter(NS + "rect")
                if b.get("fill") in (chart.BETTER, chart.WORSE)]
        self.assertEqual(len(bars), len(self.rows))

    def test_no_two_labels_overlap(self):
        boxes = [(t.text, box(t)) for t in texts(self.svg)]
        for i, (s, a) in enumerate(boxes):
            for u, b in boxes[i + 1:]:
                self.assertFalse(overlap(a, b), f"{s!r} overlaps {u!r}")

    def test_sections_group_the_rows(self):
        strings = [t.text for t in texts(self.svg)]
        for section in {r["section"] for r in self.rows}:
            self.assertEqual(strings.count(section), 1)
        self.assertIn("Latency per transaction type", " ".join(strings))


class Ratios(unittest.TestCase):
    """Bars start at the 1.0 line and go right exactly when the figure beats its reference."""

    def chart_of(self, rows):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"rows": rows}, f)
        try:
            return run_chart(f.name)
        finally:
            os.unlink(f.name)

    def test_direction_and_lower_is_better(self):
        rows = [
            {"section": "s", "figure": "fast", "ours": 3.0, "unit": "Gbps", "baseline": 1.5,
             "baseline_source": "OpenSSL"},
            {"section": "s", "figure": "big", "ours": 64.0, "unit": "KiB/UE", "baseline": 32.0,
             "baseline_source": "goal: g", "lower_is_better": True},
        ]
        svg = self.chart_of(rows)
        one = [float(l.get("x1")) for l in svg.iter(NS + "line") if l.get("stroke") == "#222"]
        self.assertEqual(len(one), 1)
        fast, big = [b for b in svg.iter(NS + "rect")
                     if b.get("fill") in (chart.BETTER, chart.WORSE)]
        self.assertEqual(fast.get("fill"), chart.BETTER)
        self.assertAlmostEqual(float(fast.get("x")), one[0], places=1)
        self.assertEqual(big.get("fill"), chart.WORSE)
        self.assertAlmostEqual(float(big.get("x")) + float(big.get("width")), one[0], places=1)
        strings = " ".join(t.text for t in texts(svg))
        self.assertIn("2.00x", strings)
        self.assertIn("0.50x", strings)
        self.assertIn("64 KiB/UE vs goal 32 KiB/UE (g), lower is better", strings)

    def test_markup_in_names_is_escaped(self):
        svg = self.chart_of([{"section": "<s>", "figure": "a & b", "ours": 1.0, "unit": "x",
                              "baseline": 1.0, "baseline_source": "<base>"}])
        self.assertIn("a & b", [t.text for t in texts(svg)])


class Summary(unittest.TestCase):
    """summary.py on the committed section files."""

    def test_every_row_has_a_reference(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("esp", "crypto", "io", "pktgen", "e2e", "mem"):
                shutil.copy(os.path.join(RESULTS, name + ".json"), d)
            out = subprocess.run([sys.executable, os.path.join(BENCH, "summary.py"), d],
                                 check=True, capture_output=True, text=True).stdout
            with open(os.path.join(d, "summary.json")) as f:
                rows = json.load(f)["rows"]
        self.assertEqual(len({r["section"] for r in rows}), 6)
        for r in rows:
            self.assertGreater(r["ratio"], 0, r["figure"])
            self.assertTrue(r["baseline_source"], r["figure"])
            self.assertIn(r["figure"], out)
        with open(os.path.join(RESULTS, "crypto.json")) as f:
            crypto = {c["case"]: c for c in json.load(f)["results"]}
        # The burst rows (against the PMD) and the single-packet rows (against `openssl
        # speed`) are taken in alternated pairs: time per packet, lower is better, and the
        # summary's ratio is the median of the pairs' ratios (baseline time over ours), as
        # crypto.json has it.
        for figure, case, source in (
            ("burst gcm decrypt 1408 B", "vs dpdk crypto-perf aesni_mb", "crypto-perf, aesni_mb PMD"),
            ("single cbc encrypt 1408 B", "vs openssl stitched", "openssl speed, stitched"),
        ):
            found = [r for r in rows if r["figure"] == figure]
            self.assertEqual(len(found), 1, figure)
            self.assertTrue(found[0]["lower_is_better"], figure)
            paired = crypto[f"{figure} {case}"]
            self.assertAlmostEqual(found[0]["ratio"], paired["ratio"])
            ratios = [p["baseline_ns"] / p["ours_ns"] for p in paired["pairs"]]
            self.assertAlmostEqual(paired["ratio"], statistics.median(ratios))
            self.assertTrue(re.search(re.escape(figure) + r" .* " + re.escape(source), out), figure)
        # ESP in per worker core against raw AF_PACKET rx, also in alternated pairs: each pair's
        # ratio is its own run over its own baseline, and the row is their median.
        with open(os.path.join(RESULTS, "pktgen.json")) as f:
            pktgen = {r["size"]: r for r in json.load(f)["results"]}
        for size in (64, 1408):
            found = [r for r in rows if r["figure"] == f"ESP in, {size} B inner"]
            self.assertEqual(len(found), 1, size)
            self.assertEqual(found[0]["baseline_source"], "raw AF_PACKET rx (pairs)")
            pairs = pktgen[size]["pairs"]
            for p in pairs:
                self.assertAlmostEqual(p["ratio_vs_raw_rx"], p["mpps_per_core"] / p["raw_af_packet_rx_mpps"])
            self.assertAlmostEqual(found[0]["ratio"],
                                   statistics.median(p["ratio_vs_raw_rx"] for p in pairs))


if __name__ == "__main__":
    unittest.main()
