#!/usr/bin/env python3
"""Draws bench/results/summary.svg from summary.json (python3 standard library only).

Top panel: one row per figure, grouped by section; the bar is the figure's ratio to its
reference (a baseline of the same run, or a goal) on a log axis centred on 1.0, so figures of
any unit share one scale and right of 1.0 is always better. The row's text carries the
absolute values with their units. Bottom panel (with --latency e2e.json): latency per
transaction type on a log axis in ms.

Usage: chart.py SUMMARY_JSON [--latency E2E_JSON] [-o OUT_SVG]   (default OUT: stdout)
"""

import argparse
import json
import math
import sys
from xml.sax.saxutils import escape

WIDTH = 1040
MARGIN = 14
FONT = 12          # figure names
SMALL = 10.5       # values, axis labels
CHAR_EM = 0.6      # upper bound of the mean glyph width of sans-serif text, in em
ROW_H = 36         # two text lines per figure
HEADER_H = 26
LAT_ROW_H = 18
BETTER, WORSE, NEUTRAL = "#3b8f4f", "#d9822b", "#999"


def text_width(s, size):
    """Width `s` takes at font `size`, erring wide so that nothing overlaps."""
    return len(s) * size * CHAR_EM


def num(v):
    """A figure with three significant digits (thousands separated above 100)."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def ratio_of(r):
    """ours / reference, inverted where lower is better; None without a reference."""
    if r.get("ratio") is not None:
        return r["ratio"]
    b = r.get("baseline")
    if not b or not r["ours"]:
        return None
    return b / r["ours"] if r.get("lower_is_better") else r["ours"] / b


def detail(r):
    """The row's second line: absolute values with units, and what they are compared to."""
    ours = f"{num(r['ours'])} {r['unit']}"
    also = [f"{num(a['value'])} {a['unit']}" for a in r.get("also", [])]
    if also:
        ours += f" ({', '.join(also)})"
    b = r.get("baseline")
    src = r.get("baseline_source") or "reference"
    if b:
        if src.startswith("goal:"):
            ref = f"goal {num(b)} {r['unit']} ({src[len('goal:'):].strip()})"
        else:
            ref = f"{src} {num(b)} {r['unit']}"
        ours += f" vs {ref}"
    else:
        ours += " (no reference)"
    if r.get("lower_is_better"):
        ours += ", lower is better"
    return ours


class Svg:
    """A list of SVG elements with helpers for the few shapes the chart uses."""

    def __init__(self):
        self.items = []
        self.background = []   # drawn first, under the grid

    def text(self, x, y, s, size=FONT, anchor="start", fill="black", weight="normal"):
        """`s` at (x, y) (the baseline), escaped."""
        self.items.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" '
                          f'text-anchor="{anchor}" fill="{fill}" font-weight="{weight}">'
                          f"{escape(s)}</text>")

    def line(self, x1, y1, x2, y2, stroke="#ccc", width=1):
        """A straight line."""
        self.items.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                          f'stroke="{stroke}" stroke-width="{width}"/>')

    def rect(self, x, y, w, h, fill, background=False):
        """A filled rectangle at least 1 px wide; `background` ones go under everything."""
        layer = self.background if background else self.items
        layer.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 1):.1f}" '
                     f'height="{h:.1f}" fill="{fill}"/>')

    def render(self, height):
        """The whole document, `height` pixels tall."""
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
                f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif">')
        return "\n".join([head, '<rect width="100%" height="100%" fill="white"/>',
                          *self.background, *self.items, "</svg>"]) + "\n"


def sections(rows):
    """Rows grouped by their section, in first-appearance order."""
    out = {}
    for r in rows:
        out.setdefault(r.get("section") or "other", []).append(r)
    return out


def ratio_axis(ratios):
    """Powers of two spanning the ratios (at least 0.5..2, at most 1/32..32)."""
    lo = min([0.5] + ratios)
    hi = max([2.0] + ratios)
    return (max(-5, math.floor(math.log2(lo))), min(5, math.ceil(math.log2(hi))))


def draw_ratios(svg, rows, y):
    """The ratio panel from `y`; returns the y below it."""
    groups = sections(rows)
    label_w = max([text_width(r["figure"], FONT) + 8 for r in rows]
                  + [text_width(detail(r), SMALL) + 8 for r in rows]
                  + [text_width(name, FONT + 1) for name in groups])
    # The gap after the labels holds a ratio text left of a bar that reaches the axis' end.
    x0 = MARGIN + min(label_w, WIDTH * 0.55) + text_width("0.00x", SMALL) + 12
    x1 = WIDTH - MARGIN - 56          # room for the ratio text at a bar's right end
    lo, hi = ratio_axis([v for v in map(ratio_of, rows) if v])

    def rx(ratio):
        e = min(max(math.log2(ratio), lo), hi)
        return x0 + (x1 - x0) * (e - lo) / (hi - lo)

    height = len(groups) * HEADER_H + len(rows) * ROW_H
    top, bottom = y + 16, y + 16 + height
    for e in range(lo, hi + 1):
        x = rx(2.0 ** e)
        svg.line(x, top - 4, x, bottom, stroke="#222" if e == 0 else "#ddd",
                 width=1.5 if e == 0 else 1)
        # Below 1 as fractions: "1/32x" takes the room "0.03125x" would overlap with.
        label = f"{2 ** e}x" if e >= 0 else f"1/{2 ** -e}x"
        svg.text(x, top - 8, label, SMALL, "middle")
        svg.text(x, bottom + 14, label, SMALL, "middle")
    svg.text(rx(2.0 ** lo), bottom + 30, "worse than the reference", SMALL, fill=WORSE)
    svg.text(rx(2.0 ** hi), bottom + 30, "better than the reference", SMALL, "end", fill=BETTER)
    yy = top
    for name, group in groups.items():
        svg.text(MARGIN, yy + 18, name, FONT + 1, weight="bold")
        yy += HEADER_H
        for i, r in enumerate(group):
            if i % 2 == 0:
                svg.rect(MARGIN, yy + 1, WIDTH - 2 * MARGIN, ROW_H - 2, "#f4f6f8", True)
            svg.text(MARGIN + 8, yy + 14, r["figure"], FONT)
            svg.text(MARGIN + 8, yy + 29, detail(r), SMALL, fill="#555")
            ratio = ratio_of(r)
            if ratio:
                a, b = sorted((rx(1.0), rx(ratio)))
                svg.rect(a, yy + 9, b - a, 16, BETTER if ratio >= 1 else WORSE)
                clipped = not 2.0 ** lo <= ratio <= 2.0 ** hi
                s = f"{ratio:.2f}x" + (" (off scale)" if clipped else "")
                if ratio >= 1:
                    svg.text(b + 4, yy + 21, s, SMALL)
                else:
                    svg.text(a - 4, yy + 21, s, SMALL, "end")
            yy += ROW_H
    return bottom + 44


def draw_latency(svg, e2e, y):
    """The latency panel from `y`: p50..p99 bars, p90 tick, line to max, per transaction."""
    lat = [(f"{r['backend']}: {k}", p) for r in e2e["results"]
           for k, p in sorted(r["latency_us"].items())]
    if not lat:
        return y
    svg.text(MARGIN, y + 14, "Latency per transaction type (akabench), ms, log scale: "
             "bar p50..p99, tick p90, thin line to max", FONT + 1, weight="bold")
    names = [n for n, _ in lat]
    values = [f"p50 {p['p50'] / 1e3:.2f}  p99 {p['p99'] / 1e3:.2f}  max {p['max'] / 1e3:.2f} ms"
              for _, p in lat]
    x0 = MARGIN + max(text_width(n, SMALL) for n in names) + 16
    x1 = WIDTH - MARGIN - max(text_width(v, SMALL) for v in values) - 12
    ms = [p[k] / 1e3 for _, p in lat for k in ("p50", "max") if p[k] > 0]
    lo = math.floor(math.log10(min(ms))) if ms else -2
    hi = max(lo + 1, math.ceil(math.log10(max(ms)))) if ms else 4

    def lx(v):
        e = math.log10(max(v, 10.0 ** lo))
        return x0 + (x1 - x0) * (min(e, hi) - lo) / (hi - lo)

    top = y + 38
    bottom = top + LAT_ROW_H * len(lat)
    for e in range(lo, hi + 1):
        svg.line(lx(10.0 ** e), top - 6, lx(10.0 ** e), bottom, "#ddd")
        svg.text(lx(10.0 ** e), top - 10, f"{10.0 ** e:g} ms", SMALL, "middle")
    for i, ((name, p), value) in enumerate(zip(lat, values)):
        yy = top + LAT_ROW_H * i + LAT_ROW_H / 2
        svg.text(x0 - 8, yy + 4, name, SMALL, "end")
        a, b = lx(p["p50"] / 1e3), lx(p["p99"] / 1e3)
        svg.line(a, yy, lx(p["max"] / 1e3), yy, "#999")
        svg.rect(a, yy - 5, b - a, 10, "#4a90d9")
        svg.line(lx(p["p90"] / 1e3), yy - 7, lx(p["p90"] / 1e3), yy + 7, "black")
        svg.text(x1 + 12, yy + 4, value, SMALL, fill="#555")
    return bottom + 16


def chart(summary, e2e=None):
    """The SVG document for a summary.json (and optionally e2e.json) as a string."""
    svg = Svg()
    svg.text(MARGIN, 24, "akagate make bench: each figure as a ratio to its reference", 16,
             weight="bold")
    svg.text(MARGIN, 42, "reference = a baseline measured in the same run, or a goal "
             "(bench/summary.py); log scale, 1.0 = on par", SMALL, fill="#555")
    y = draw_ratios(svg, summary["rows"], 52)
    if e2e:
        y = draw_latency(svg, e2e, y)
    return svg.render(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", help="summary.json written by bench/summary.py")
    ap.add_argument("--latency", metavar="E2E_JSON", help="e2e.json for the latency panel")
    ap.add_argument("-o", "--output", help="SVG file to write (default: stdout)")
    args = ap.parse_args()
    with open(args.summary) as f:
        summary = json.load(f)
    e2e = None
    if args.latency:
        with open(args.latency) as f:
            e2e = json.load(f)
    doc = chart(summary, e2e)
    if args.output:
        with open(args.output, "w") as f:
            f.write(doc)
    else:
        sys.stdout.write(doc)


if __name__ == "__main__":
    main()
