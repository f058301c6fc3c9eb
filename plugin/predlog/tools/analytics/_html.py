"""Self-contained HTML reports: inline SVG plots, no scripts, no network.

The page opens from a file, in an air-gapped audit room, years from now.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predlog.tools.analytics._trace import Trace

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# After the eight colours are used once, curves repeat them with these dash patterns,
# so twelve cohort values stay distinguishable.
DASHES = ("", "7 3", "2 3", "9 3 2 3")
FONT = 11  # px; text widths are estimated from it (an SVG cannot measure text without a script)
CHAR = 0.62  # average glyph width of sans-serif text, in ems: generous, so labels do not collide
LEGEND_ROW = 18
MIN_BAR = 2.0  # px: a share above zero stays visible above the axis line, however small
AXIS = 'stroke="#333"'
GRID = 'stroke="#eee"'
_CONTROL = dict.fromkeys(range(32), "\ufffd") | {9: " ", 10: " ", 13: " "}


def _esc(text: object) -> str:
    """Escape user data (feature names, categories, cohort values) for HTML and SVG text.

    Control characters are replaced as well: they are not allowed in XML, and the SVG must
    stay well formed wherever it is pasted.
    """
    return html.escape(str(text).translate(_CONTROL), quote=True)


def _n(value: float) -> str:
    """A coordinate or size: one decimal, never NaN or infinite."""
    return f"{value:.1f}" if math.isfinite(value) else "0"


def _width(text: str, size: float = FONT) -> float:
    return len(text) * size * CHAR


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis at the end."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _clip_middle(text: str, limit: int) -> str:
    """Cut in the middle: a cohort label keeps its value's start and its "(AUC, n)" end."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head) :]


def _svg(width: float, height: float, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" font-family="sans-serif" '
        f'font-size="{FONT}"><title>{_esc(title)}</title>',
        f'<text class="chart-title" x="8" y="16" font-size="12" font-weight="bold">'
        f"{_esc(_clip(title, max(int((width - 16) / (12 * CHAR)), 8)))}</text>",
    ]


def _line(x1: float, y1: float, x2: float, y2: float, style: str = AXIS) -> str:
    return f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" {style}/>'


def _text(
    x: float, y: float, text: str, cls: str, *, anchor: str = "start", extra: str = ""
) -> str:
    return (
        f'<text class="{cls}" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{extra}>'
        f"{_esc(text)}</text>"
    )


def _y_label(label: str, x: float, y: float) -> str:
    """The y axis' label, written upwards along the axis."""
    turn = f' transform="rotate(-90 {_n(x)} {_n(y)})"'
    return _text(x, y, label, "axis-label", anchor="middle", extra=turn)


@dataclass(frozen=True)
class _Box:
    """The plot area inside an SVG, in pixels."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def axes(self) -> str:
        return _line(self.left, self.bottom, self.right, self.bottom) + _line(
            self.left, self.top, self.left, self.bottom
        )


def line_chart(
    title: str,
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    x_label: str,
    y_label: str,
) -> str:
    """Curves on the unit square (ROC: false against true positive rate) with axes and a legend.

    The legend sits to the right of the plot and grows downwards with the number of
    series, so it never covers a curve, and the series' names (a cohort value with its
    AUC and n) are read there rather than guessed from colours.
    """
    box = _Box(64.0, 34.0, 300.0, 300.0)
    names = list(series)
    shown = [_clip_middle(str(name), 72) for name in names]
    legend_x = box.right + 24
    width = legend_x + 30 + max((_width(s) for s in shown), default=0) + 12
    height = max(box.bottom + 54, box.top + 8 + LEGEND_ROW * len(names) + 8)
    parts = _svg(width, height, title)
    parts.append(
        f'<rect x="{_n(box.left)}" y="{_n(box.top)}" width="{_n(box.width)}" '
        f'height="{_n(box.height)}" fill="white" stroke="#bbb"/>'
    )
    for i in range(6):
        x, y, label = box.left + i / 5 * box.width, box.bottom - i / 5 * box.height, f"{i / 5:.1f}"
        if 0 < i < 5:
            parts.append(_line(x, box.top, x, box.bottom, GRID))
            parts.append(_line(box.left, y, box.right, y, GRID))
        parts.append(_line(x, box.bottom, x, box.bottom + 5) + _line(box.left - 5, y, box.left, y))
        parts.append(_text(x, box.bottom + 18, label, "tick-x", anchor="middle"))
        parts.append(_text(box.left - 8, y + 4, label, "tick-y", anchor="end"))
    parts.append(box.axes())
    parts.append(
        _line(box.left, box.bottom, box.right, box.top, 'stroke="#aaa" stroke-dasharray="4"')
    )
    parts.append(
        _text(box.left + box.width / 2, box.bottom + 40, x_label, "axis-label", anchor="middle")
    )
    parts.append(_y_label(y_label, 18, box.top + box.height / 2))
    legend = ['<g class="legend">']
    for i, (name, label) in enumerate(zip(names, shown, strict=True)):
        colour, dash = COLOURS[i % len(COLOURS)], DASHES[(i // len(COLOURS)) % len(DASHES)]
        style = f'stroke="{colour}"' + (f' stroke-dasharray="{dash}"' if dash else "")
        coords = " ".join(
            f"{_n(box.left + _unit(p[0]) * box.width)},{_n(box.bottom - _unit(p[1]) * box.height)}"
            for p in series[name]
            if len(p) >= 2 and math.isfinite(p[0]) and math.isfinite(p[1])
        )
        parts.append(
            f'<polyline fill="none" {style} stroke-width="2" points="{coords}">'
            f"<title>{_esc(name)}</title></polyline>"
        )
        y = box.top + 8 + LEGEND_ROW * (i + 0.5)
        legend.append(
            _line(legend_x, y, legend_x + 22, y, f'{style} stroke-width="4"')
            + f'<text class="legend-entry" x="{_n(legend_x + 30)}" y="{_n(y + 4)}">'
            f"<title>{_esc(name)}</title>{_esc(label)}</text>"
        )
    parts.extend([*legend, "</g>", "</svg>"])
    return "".join(parts)


def _unit(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def _shares(values: Sequence[float], n: int) -> list[float]:
    """Each bin's share of the total, over ``n`` bins; anything not finite and positive is 0."""
    out = [0.0] * n
    for i, v in enumerate(values):
        x = float("nan") if v is None else float(v)
        out[i] = x if math.isfinite(x) and x > 0 else 0.0
    top = max(out, default=0.0)
    if top <= 0:
        return out
    scaled = [x / top for x in out]  # finite counts near the float limit must not sum to inf
    total = sum(scaled)
    # A count above zero keeps a share above zero (so a bar) even when it underflows.
    return [
        max(x / total, math.ulp(0.0)) if v > 0 else 0.0 for v, x in zip(out, scaled, strict=True)
    ]


def _edge(value: float) -> str:
    """A bin edge in at most four significant digits: 1234.5 -> 1235, 0.000123 -> 1.23e-4."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.4g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return "0" if text == "-0" else text


def _percent_ticks(top: float) -> tuple[float, list[tuple[float, str]]]:
    """A rounded axis maximum at or above ``top`` (a share) and its ticks labelled in percent."""
    if top <= 0:
        top = 1.0
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    count = math.ceil(top / step * (1 - 1e-9))
    decimals = max(0, -math.floor(math.log10(step * 100) + 1e-9))
    return step * count, [(k * step, f"{k * step * 100:.{decimals}f}%") for k in range(count + 1)]


@dataclass(frozen=True)
class _Bins:
    """A histogram's x axis: what each bin is called and which labels fit under it."""

    n: int
    labels: list[str]  # as drawn: edges (n + 1 of them) or categories cut to fit
    full: list[str]  # as named in tooltips
    categorical: bool

    @classmethod
    def of(cls, n: int, edges: Sequence[float] | None, categories: Sequence[str] | None) -> _Bins:
        if categories is not None:
            full = [str(x) for x in categories][:n]
            full += [""] * (n - len(full))
            return cls(n, [_clip(name, 14) for name in full], full, categorical=True)
        values = [float("nan") if e is None else float(e) for e in edges or ()]
        labels = [_edge(v) for v in values] if n and len(values) == n + 1 else []
        return cls(n, labels, labels, categorical=False)

    def name(self, i: int) -> str:
        """Bin ``i`` as a tooltip names it."""
        if self.categorical:
            return self.full[i]
        return f"[{self.labels[i]}, {self.labels[i + 1]})" if self.labels else f"bin {i + 1}"

    def plot_width(self) -> float:
        """Room per bin for a turned category label or a level edge label, within a page."""
        per_bin = 14.0 if self.categorical else max(4.0, self.widest() + 8)
        return min(max(360.0, self.n * per_bin), 960.0)

    def widest(self) -> float:
        return max((_width(t, 10) for t in self.labels), default=0.0)

    def layout(self, slot: float) -> tuple[list[int], bool]:
        """Which labels to draw (every k-th) and whether to turn them 45 degrees.

        Level labels are kept while thinning to every other one suffices; beyond that
        they are turned, which needs only a line's height of room each.
        """
        stride = math.ceil((self.widest() + 8) / slot) if slot > 0 else 1
        turned = stride > 2
        if turned:
            stride = math.ceil(14 / slot)
        shown = list(range(0, len(self.labels), max(stride, 1)))
        if not self.categorical and shown and shown[-1] != len(self.labels) - 1:
            shown[-1] = len(self.labels) - 1  # the last edge, the baseline's maximum, is named
        return shown, turned

    def position(self, box: _Box, slot: float, i: int) -> float:
        return box.left + (i + 0.5 if self.categorical else i) * slot


def histogram(
    title: str,
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    edges: Sequence[float] | None = None,
    categories: Sequence[str] | None = None,
    x_label: str = "",
    y_label: str = "share of (weighted) records",
) -> str:
    """Baseline and current shares per bin or category, side by side.

    Both series are normalised to shares, so windows of different sizes compare. Baseline
    is solid, current hatched and outlined: the two read apart in grey print too. The x
    axis names the bin edges (numerical) or the categories (categorical, cut to fit with
    the full name as a tooltip); labels are thinned or turned when they would collide.
    Every size is clamped at zero and a bar with a share above zero stays visible.
    """
    n = max(len(baseline), len(current))
    b, c = _shares(baseline, n), _shares(current, n)
    bins = _Bins.of(n, edges, categories)
    plot_w = bins.plot_width()
    slot = plot_w / n if n else plot_w
    shown, turned = bins.layout(slot)
    widest = bins.widest()
    label_h = widest * 0.71 + 14 if turned else 16.0
    box = _Box(max(64.0, widest * 0.71 + 12 if turned else widest / 2 + 8), 50.0, plot_w, 220.0)
    width = box.right + (16.0 if turned else max(16.0, widest / 2 + 8))
    height = box.bottom + 16 + label_h + (20 if x_label else 0)
    digest = hashlib.sha1(repr((title, b, c, bins)).encode(), usedforsecurity=False)
    hatch = "predlog-hatch-" + digest.hexdigest()[:10]

    parts = _svg(width, height, title)
    parts.append(
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{COLOURS[1]}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="white" stroke-width="2.5"/></pattern></defs>'
    )
    axis_max, y_ticks = _percent_ticks(max([*b, *c], default=0.0))
    for value, label in y_ticks:
        y = box.bottom - box.height * value / axis_max
        if value > 0:
            parts.append(_line(box.left, y, box.right, y, GRID))
        parts.append(_line(box.left - 5, y, box.left, y))
        parts.append(_text(box.left - 8, y + 4, label, "tick-y", anchor="end"))
    styles = (
        f'class="bar-baseline" fill="{COLOURS[0]}"',
        f'class="bar-current" fill="url(#{hatch})"',
    )
    parts.extend(_bars(box, slot, axis_max=axis_max, shares=(b, c), styles=styles, bins=bins))
    if not any(b) and not any(c):
        parts.append(
            _text(
                box.left + box.width / 2,
                box.top + box.height / 2,
                "no records",
                "empty",
                anchor="middle",
            )
        )
    parts.append(box.axes())
    parts.extend(_x_ticks(box, slot, bins, shown, turned))
    if x_label:
        parts.append(
            _text(box.left + box.width / 2, height - 10, x_label, "axis-label", anchor="middle")
        )
    parts.append(_y_label(y_label, 16, box.top + box.height / 2))
    parts.append(
        f'<g class="legend"><rect x="{_n(box.left)}" y="{_n(box.top - 22)}" width="14" height="12" '
        f'fill="{COLOURS[0]}"/>{_text(box.left + 20, box.top - 12, "baseline", "legend-entry")}'
        f'<rect x="{_n(box.left + 96)}" y="{_n(box.top - 22)}" width="14" height="12" '
        f'fill="url(#{hatch})" stroke="{COLOURS[1]}"/>'
        f"{_text(box.left + 116, box.top - 12, 'current', 'legend-entry')}</g></svg>"
    )
    return "".join(parts)


def _bars(
    box: _Box,
    slot: float,
    *,
    axis_max: float,
    shares: tuple[list[float], list[float]],
    styles: tuple[str, str],
    bins: _Bins,
) -> list[str]:
    """Each bin's pair of bars, with a tooltip naming the bin and both shares.

    A share above zero gets at least MIN_BAR of height: a rare category must not vanish
    next to a dominant one. Widths come from the slot and cannot go below zero.
    """
    pad = min(4.0, slot * 0.12)  # a gap between bins keeps each pair together
    bar_w = max((slot - 2 * pad) / 2, 0.0)
    out = []
    for i in range(bins.n):
        pair = [
            f"<g><title>{_esc(bins.name(i))}: baseline {shares[0][i]:.1%}, "
            f"current {shares[1][i]:.1%}</title>"
        ]
        for j, (values, style) in enumerate(zip(shares, styles, strict=True)):
            if values[i] <= 0:
                continue
            h = min(max(box.height * values[i] / axis_max, MIN_BAR), box.height)
            outline = f' stroke="{COLOURS[1]}" stroke-width="1"' if j and bar_w >= 4 else ""
            pair.append(
                f'<rect {style}{outline} x="{_n(box.left + i * slot + pad + j * bar_w)}" '
                f'y="{_n(box.bottom - h)}" width="{_n(bar_w)}" height="{_n(h)}"/>'
            )
        if len(pair) > 1:
            out.append("".join(pair) + "</g>")
    return out


def _x_ticks(box: _Box, slot: float, bins: _Bins, shown: list[int], turned: bool) -> list[str]:
    """Ticks and labels under the x axis; a cut category name keeps its full name as tooltip."""
    out = []
    cls = "category" if bins.categorical else "tick-x"
    anchor = "end" if turned else "middle"
    for i in shown:
        x, y = bins.position(box, slot, i), box.bottom + 16
        hint = f"<title>{_esc(bins.full[i])}</title>" if bins.full[i] != bins.labels[i] else ""
        turn = f' transform="rotate(-45 {_n(x)} {_n(y - 4)})"' if turned else ""
        out.append(
            _line(x, box.bottom, x, box.bottom + 5)
            + f'<text class="{cls}" x="{_n(x)}" y="{_n(y)}" font-size="10" '
            f'text-anchor="{anchor}"{turn}>{hint}{_esc(bins.labels[i])}</text>'
        )
    return out


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
