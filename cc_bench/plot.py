"""`--plot FILE`: latency by percentile (HdrHistogram style) as SVG, or HTML around it.

The x axis spreads the tail: position log10(1 / (1 - p)), labelled 0 %, 90 %, 99 %,
99.9 % ...; the y axis is latency in milliseconds. One line per operation kind.
"""

from __future__ import annotations

import html
import math
from typing import Any

from .report import format_table

WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 60
COLOURS = {"start": "#1f77b4", "update": "#2ca02c", "stop": "#d62728", "containers": "#444444",
           "notification": "#9467bd", "top_up": "#8c564b", "ping": "#ff7f0e"}


def _curve(hist: dict[str, Any], nines: int) -> list[tuple[float, float]]:
    """(x = log10(1/(1-p)), latency ms) at every bucket edge of the histogram."""
    total = hist["total_count"]
    points: list[tuple[float, float]] = []
    if not total:
        return points
    points.append((0.0, hist["min"] / 1e6))
    seen = 0
    for _low, high, count in hist["buckets"]:
        seen += count
        tail = 1 - seen / total
        x = nines if tail <= 10.0 ** -nines else min(nines, math.log10(1 / tail))
        points.append((x, min(high, hist["max"]) / 1e6))
    return points


def render_svg(result: dict[str, Any]) -> str:
    """The chart as an SVG document."""
    hists = result["histograms"]
    kinds = [k for k in ("ping", "start", "update", "stop", "containers", "top_up",
                         "notification") if k in hists and hists[k]["total_count"]]
    most = max((hists[k]["total_count"] for k in kinds), default=1)
    nines = max(2, min(6, math.ceil(math.log10(max(most, 10)))))
    curves = {k: _curve(hists[k], nines) for k in kinds}
    top: float = max((y for pts in curves.values() for _, y in pts), default=1.0) or 1.0
    rough = top / 5   # a round grid step, 1, 2, 2.5 or 5 times a power of ten
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(k * magnitude for k in (1, 2, 2.5, 5, 10) if k * magnitude >= rough)
    top = math.ceil(top / step) * step
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + pw * x / nines

    def sy(y: float) -> float:
        return TOP + ph * (1 - y / top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    sm = result["summary"]
    title = (f"cc-bench latency by percentile: {sm['ops_per_s']:,.0f} ops per second, "
             f"{sm['elapsed_s']:.1f} s")
    out.append(f'<text x="{LEFT}" y="24" font-size="15">{html.escape(title)}</text>')
    for i in range(nines + 1):   # vertical grid: 0 %, 90 %, 99 %, ...
        label = "0%" if i == 0 else f"{100 - 10.0 ** (2 - i):.{max(0, i - 2)}f}%"
        out.append(f'<line x1="{sx(i):.1f}" y1="{TOP}" x2="{sx(i):.1f}" y2="{TOP + ph}" '
                   f'stroke="#ddd"/><text x="{sx(i):.1f}" y="{TOP + ph + 18}" '
                   f'text-anchor="middle">{label}</text>')
    for j in range(round(top / step) + 1):
        y = step * j
        out.append(f'<line x1="{LEFT}" y1="{sy(y):.1f}" x2="{LEFT + pw}" y2="{sy(y):.1f}" '
                   f'stroke="#ddd"/><text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{y:g}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{HEIGHT - 16}" text-anchor="middle">'
               f'percentile</text>')
    out.append(f'<text x="18" y="{TOP + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {TOP + ph / 2})">latency (ms)</text>')
    for n, kind in enumerate(kinds):
        colour = COLOURS.get(kind, "#17becf")
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in curves[kind])
        dash = ' stroke-dasharray="5,3"' if kind == "containers" else ""
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} '
                   f'points="{pts}"/>')
        ly = TOP + 10 + 20 * n
        out.append(f'<line x1="{LEFT + pw + 15}" y1="{ly}" x2="{LEFT + pw + 40}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"{dash}/><text x="{LEFT + pw + 46}" '
                   f'y="{ly + 4}">{html.escape(kind)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(result: dict[str, Any]) -> str:
    """A small HTML page: the chart and the results table."""
    table = html.escape("\n".join(format_table(result)))
    return ("<!doctype html>\n<html><head><meta charset='utf-8'><title>cc-bench</title></head>"
            "<body style='font-family:sans-serif'>\n" + render_svg(result)
            + f"\n<pre>{table}</pre>\n</body></html>\n")


def write_plot(result: dict[str, Any], path: str) -> None:
    """SVG, or HTML when `path` ends in .html or .htm."""
    text = render_html(result) if path.lower().endswith((".html", ".htm")) \
        else render_svg(result)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
