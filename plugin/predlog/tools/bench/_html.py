"""The HTML report of ``predlog bench``: the summary and latency CDFs as inline SVG.

Dependency-free on purpose: a user's environment has predlog and its server, not
necessarily a plotting library, and one self-contained file opens anywhere.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from predlog.tools.bench._stats import cdf

COLOURS = {"predlog": "#d62728", "pass-through": "#1f77b4"}
WIDTH, HEIGHT, PAD = 640, 320, 48


def _x(ms: float, low: float, high: float) -> float:
    span = math.log10(high) - math.log10(low)
    return PAD + (math.log10(ms) - math.log10(low)) / span * (WIDTH - 2 * PAD)


def _y(fraction: float) -> float:
    return HEIGHT - PAD - fraction * (HEIGHT - 2 * PAD)


def _axes(low: float, high: float) -> list[str]:
    parts = [
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" text-anchor="middle">latency, ms (log)</text>',
    ]
    decade = 10 ** math.floor(math.log10(low))
    while decade <= high:
        for tick in (decade, 2 * decade, 5 * decade):
            if low <= tick <= high:
                x = _x(tick, low, high)
                parts.append(
                    f'<line x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" y2="{HEIGHT - PAD}" '
                    'stroke="#eee"/>'
                    f'<text x="{x:.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle" '
                    f'font-size="11">{tick:g}</text>'
                )
        decade *= 10
    for fraction in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0):
        y = _y(fraction)
        parts.append(
            f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{fraction:g}</text>"
        )
    return parts


def cdf_svg(title: str, series: Mapping[str, Sequence[float]]) -> str:
    """One chart: the CDF of each variant's latencies (ms), on a log latency axis."""
    values = [v for latencies in series.values() for v in latencies if v > 0]
    if not values:
        return f"<p>{html.escape(title)}: no requests completed.</p>"
    low, high = min(values) * 0.9, max(values) * 1.1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12"><title>{html.escape(title)}</title>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle">{html.escape(title)}</text>',
        *_axes(low, high),
    ]
    for i, (name, latencies) in enumerate(series.items()):
        points = " ".join(
            f"{_x(max(ms, low), low, high):.1f},{_y(f):.1f}" for ms, f in cdf(latencies)
        )
        colour = COLOURS.get(name, "#555")
        parts.append(
            f'<polyline class="cdf" data-variant="{html.escape(name)}" fill="none" '
            f'stroke="{colour}" stroke-width="1.5" points="{points}"/>'
            f'<text x="{PAD + 10}" y="{PAD + 16 * i}" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def write(path: Path, summary: str, charts: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
    """The report: the printed summary, then one CDF chart per load."""
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{cdf_svg(t, s)}" for t, s in charts.items())
    path.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>predlog bench</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}</style>"
        "</head><body><h1>predlog bench</h1>\n"
        f"<pre>{html.escape(summary)}</pre>\n{body}\n</body></html>\n"
    )
