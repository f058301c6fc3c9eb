"""Self-contained HTML reports: inline SVG plots, no scripts, no network.

The page opens from a file, in an air-gapped audit room, years from now.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predlog.analytics._trace import Trace

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
W, H, PAD = 420, 300, 40


def roc_curve(y: Any, s: Any, w: Any, points: int = 200) -> list[tuple[float, float]]:
    """Weighted ROC curve as (false positive rate, true positive rate), thinned to ``points``."""
    order = np.argsort(-np.asarray(s, dtype=float), kind="mergesort")
    yy = np.asarray(y, dtype=bool)[order]
    ww = np.asarray(w, dtype=float)[order]
    tp = np.concatenate([[0.0], np.cumsum(ww * yy)])
    fp = np.concatenate([[0.0], np.cumsum(ww * ~yy)])
    if tp[-1] == 0 or fp[-1] == 0:
        return []
    keep = np.unique(np.linspace(0, len(tp) - 1, min(points, len(tp))).astype(int))
    return [(float(fp[i] / fp[-1]), float(tp[i] / tp[-1])) for i in keep]


def _frame(title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<rect x="{PAD}" y="10" width="{W - PAD - 10}" height="{H - PAD - 10}" '
        'fill="white" stroke="#999"/>',
    ]


def _xy(x: float, y: float) -> tuple[float, float]:
    return PAD + x * (W - PAD - 10), 10 + (1 - y) * (H - PAD - 10)


def line_chart(title: str, series: dict[str, list[tuple[float, float]]]) -> str:
    parts = _frame(title)
    x0, y0 = _xy(0, 0)
    x1, y1 = _xy(1, 1)
    parts.append(
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#ccc" stroke-dasharray="4"/>'
    )
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join("{:.1f},{:.1f}".format(*_xy(x, y)) for x, y in points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{coords}"><title>{html.escape(name)}</title></polyline>'
        )
        parts.append(
            f'<text x="{PAD + 10}" y="{H - PAD - 14 - 14 * i}" font-size="11" '
            f'fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append(
        f'<text x="{W / 2}" y="{H - 8}" font-size="11" text-anchor="middle">'
        "false positive rate</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, baseline: Sequence[float], current: Sequence[float]) -> str:
    parts = _frame(title)
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(current, dtype=float)
    b = b / b.sum() if b.sum() else b
    c = c / c.sum() if c.sum() else c
    top = max(float(b.max(initial=0)), float(c.max(initial=0)), 1e-9)
    n = len(b)
    width = (W - PAD - 10) / max(n, 1)
    for i in range(n):
        for j, (values, colour) in enumerate(((b, COLOURS[0]), (c, COLOURS[1]))):
            height = (H - PAD - 10) * values[i] / top
            x = PAD + i * width + j * width / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{10 + (H - PAD - 10) - height:.1f}" '
                f'width="{width / 2 - 1:.1f}" height="{height:.1f}" fill="{colour}"/>'
            )
    parts.append(f'<text x="{PAD + 6}" y="24" font-size="11" fill="{COLOURS[0]}">baseline</text>')
    parts.append(f'<text x="{PAD + 6}" y="38" font-size="11" fill="{COLOURS[1]}">current</text>')
    parts.append("</svg>")
    return "".join(parts)


def page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<section><h2>{html.escape(heading)}</h2>{content}</section>"
        for heading, content in sections
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;color:#222}"
        "section{display:inline-block;vertical-align:top;margin:0 2em 2em 0}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee}"
        ".note{color:#8a5a00}.num{text-align:right;white-space:nowrap}"
        ".waterfall td.lane,.waterfall th.lane{width:220px;padding:0 4px}"
        ".bar{height:12px;min-width:2px;border-radius:2px}"
        ".columns{display:grid;gap:2em;width:calc(100vw - 6em);"
        "grid-template-columns:minmax(440px,1fr) minmax(560px,1.2fr)}"
        ".column td{max-width:360px;overflow-wrap:anywhere}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def columns(*cols: list[tuple[str, str]]) -> str:
    """Sections in columns side by side (wrapping on a narrow window)."""
    parts = []
    for col in cols:
        inner = "".join(f"<h3>{html.escape(h)}</h3>{content}" for h, content in col)
        parts.append(f'<div class="column">{inner}</div>')
    return f'<div class="columns">{"".join(parts)}</div>'


def note(text: str) -> str:
    """One line saying why something is not shown."""
    return f'<p class="note">{html.escape(text)}</p>'


def waterfall(trace: Trace) -> str:
    """A trace's spans as a waterfall: service, name, duration, and a bar on the timeline.

    Plain HTML and CSS, the bars placed by percentages of the trace's duration, so the
    page needs no script and prints as it shows.
    """
    if trace.problem:
        return note(trace.problem)
    total = max(trace.duration_us, 1)
    rows = []
    for span in trace.spans:
        left = 100 * span.offset_us / total
        width = max(100 * span.duration_us / total, 0.3)
        colour = COLOURS[1] if span.prediction_attributes else COLOURS[0]
        hover = "\n".join(f"{k} = {v}" for k, v in sorted(span.attributes.items()))
        rows.append(
            f'<tr title="{html.escape(hover)}"><td>{html.escape(span.service)}</td>'
            f'<td style="padding-left:{8 + 14 * span.depth}px">{html.escape(span.name)}</td>'
            f'<td class="num">{span.duration_us / 1000:.2f} ms</td>'
            f'<td class="num">+{span.offset_us / 1000:.2f} ms</td>'
            f'<td class="lane"><div class="bar" style="margin-left:{left:.2f}%;'
            f'width:{width:.2f}%;background:{colour}"></div></td></tr>'
        )
    return (
        f"<p>trace <code>{html.escape(trace.trace_id)}</code>, {len(trace.spans)} spans,"
        f" {trace.duration_us / 1000:.2f} ms; red: spans carrying the prediction's"
        " attributes</p>"
        '<table class="waterfall"><tr><th>service</th><th>span</th><th>duration</th>'
        f'<th>start</th><th class="lane">timeline</th></tr>{"".join(rows)}</table>'
    )


def span_attributes(trace: Trace) -> str:
    """The prediction's attributes as the trace carries them, span by span."""
    rows = [
        {"span": span.name, "attribute": key, "value": value}
        for span in trace.spans
        for key, value in sorted(span.prediction_attributes.items())
    ]
    if not rows:
        return note("no prediction attributes on the trace")
    return table(rows, ("span", "attribute", "value"))


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def write(path: str | Path, content: str) -> Path:
    target = Path(path)
    target.write_text(content, encoding="utf-8")
    return target
