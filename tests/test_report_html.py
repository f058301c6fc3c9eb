"""The HTML reports' charts read on their own and never break.

A ROC chart names its axes, ticks and each curve (with AUC and n) in a legend beside
the plot; a drift histogram names its bin edges or categories and tells baseline from
current. Whatever the data (no bins, 200 bins, NaN edges, hostile category names), the
SVG stays well formed with no negative or non-finite size. The Chromium tests render
pages built from these functions alone and read the rendered DOM and the screenshot.
"""

from __future__ import annotations

import html
import itertools
import math
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from predlog.tools.analytics import _html
from tests.test_analytics import render

NS = "{http://www.w3.org/2000/svg}"
SIZES = ("width", "height", "r", "rx", "ry")
COORDS = ("x", "y", "x1", "y1", "x2", "y2", "cx", "cy")
TICKS = ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
BLUE, RED, GREEN = (31, 119, 180), (214, 39, 40), (44, 160, 44)
HOSTILE = "<script>alert('x')</script> & \"quoted\""


def curve(power: float) -> list[tuple[float, float]]:
    return [(x / 50, (x / 50) ** (1 / power)) for x in range(51)]


def tree(svg: str) -> ET.Element:
    """The chart parsed as XML: it must be well formed to parse at all."""
    return ET.fromstring(svg)  # noqa: S314  # the charts under test, not outside input


def visible(element: ET.Element) -> str:
    """The text a reader sees: the element's own text, without its <title> tooltip."""
    return (element.text or "") + "".join(child.tail or "" for child in element)


def num(element: ET.Element, name: str) -> float:
    """A numeric attribute the element must have."""
    value = element.get(name)
    assert value is not None, (element.tag, name)
    return float(value)


def tooltip(element: ET.Element) -> str | None:
    found = element.find(f"{NS}title")
    return None if found is None else found.text


def texts(svg: str, cls: str) -> list[str]:
    return [visible(e) for e in tree(svg).iter(f"{NS}text") if e.get("class") == cls]


def numbers(value: str) -> list[float]:
    return [float(x) for x in re.split(r"[\s,()a-zA-Z]+", value) if x and x not in "+-"]


def check_geometry(svg: str) -> ET.Element:
    """No element with a negative or non-finite size, and every coordinate finite."""
    root = tree(svg)
    for element in root.iter():
        for name, value in element.attrib.items():
            assert "nan" not in value.lower() and "inf" not in value.lower(), (name, value)
            if name in SIZES:
                assert math.isfinite(float(value)) and float(value) >= 0, (element.tag, name, value)
            elif name in COORDS:
                assert math.isfinite(float(value)), (element.tag, name, value)
            elif name in ("points", "viewBox") or (name == "transform" and "rotate" in value):
                assert all(math.isfinite(v) for v in numbers(value)), (name, value)
    return root


def roc(series: dict[str, list[tuple[float, float]]]) -> str:
    return _html.line_chart(
        "ROC by channel", series, x_label="false positive rate", y_label="true positive rate"
    )


def polyline_xs(root: ET.Element) -> list[float]:
    return [
        numbers(p)[0]
        for line in root.iter(f"{NS}polyline")
        for p in (line.get("points") or "").split()
    ]


class TestRocChart:
    def test_axes_ticks_labels_and_legend(self) -> None:
        """Both axes tick 0.0..1.0, carry their labels, and the legend names each curve."""
        names = ["web (AUC 0.812, n=1,234)", "app (AUC 0.701, n=567)"]
        svg = roc({names[0]: curve(3), names[1]: curve(1.5)})
        root = check_geometry(svg)
        assert texts(svg, "tick-x") == TICKS
        assert texts(svg, "tick-y") == TICKS
        labels = {visible(e): e for e in root.iter(f"{NS}text") if e.get("class") == "axis-label"}
        assert set(labels) == {"false positive rate", "true positive rate"}
        assert "rotate(-90" in (labels["true positive rate"].get("transform") or "")
        assert texts(svg, "legend-entry") == names

    def test_legend_beside_the_plot_grows_with_many_series(self) -> None:
        """Twelve cohort values: the legend is right of every curve, one row each, inside the
        SVG, and each curve has its own colour-and-dash style."""
        names = [f"value {i} (AUC {0.5 + i / 30:.3f}, n={1000 + i:,})" for i in range(12)]
        names[5] = "a merchant category with a very long name indeed " * 3 + "(AUC 0.6, n=9)"
        svg = roc({name: curve(1 + i / 3) for i, name in enumerate(names)})
        root = check_geometry(svg)
        entries = [e for e in root.iter(f"{NS}text") if e.get("class") == "legend-entry"]
        assert len(entries) == 12
        assert visible(entries[5]).endswith("(AUC 0.6, n=9)"), "a cut name keeps its AUC and n"
        assert tooltip(entries[5]) == names[5]
        right_of_curves = max(polyline_xs(root))
        ys = [num(e, "y") for e in entries]
        assert all(num(e, "x") > right_of_curves + 20 for e in entries)
        assert all(b - a >= 14 for a, b in itertools.pairwise(ys)), ys
        assert ys[-1] < num(root, "height")
        longest = max(len(visible(e)) for e in entries)
        assert num(root, "width") >= num(entries[0], "x") + longest * 11 * 0.55
        styles = {(p.get("stroke"), p.get("stroke-dasharray")) for p in root.iter(f"{NS}polyline")}
        assert len(styles) == 12

    @given(
        st.dictionaries(
            st.text(max_size=30),
            st.lists(st.tuples(st.floats(), st.floats()), max_size=20),
            max_size=15,
        )
    )
    @hsettings(max_examples=60)
    def test_any_series_gives_finite_geometry_inside_the_plot(
        self, series: dict[str, list[tuple[float, float]]]
    ) -> None:
        """NaN, infinite or out-of-range points never leave the plot or break the SVG."""
        root = check_geometry(roc(series))
        frame = next(root.iter(f"{NS}rect"))
        left, width = num(frame, "x"), num(frame, "width")
        assert all(left <= x <= left + width for x in polyline_xs(root))


class TestHistogram:
    def test_numerical_names_every_edge_and_both_series(self) -> None:
        """Ten bins: all eleven edges, compact, under the axis; percent ticks; a legend."""
        edges = [0, 3.2, 7.9, 12.5, 20.123, 33.3, 60, 99.9, 150, 400, 12345.678]
        svg = _html.histogram(
            "amount", [5, 1, 3, 2, 6, 4, 8, 2, 1, 1], [1] * 10, edges=edges, x_label="amount"
        )
        root = check_geometry(svg)
        assert texts(svg, "tick-x") == [
            "0", "3.2", "7.9", "12.5", "20.12", "33.3", "60", "99.9", "150", "400", "1.235e4"
        ]  # fmt: skip
        y_ticks = texts(svg, "tick-y")
        assert y_ticks[0] == "0%" and all(t.endswith("%") for t in y_ticks) and len(y_ticks) >= 3
        assert texts(svg, "legend-entry") == ["baseline", "current"]
        assert "amount" in texts(svg, "axis-label")
        base = [r for r in root.iter(f"{NS}rect") if r.get("class") == "bar-baseline"]
        cur = [r for r in root.iter(f"{NS}rect") if r.get("class") == "bar-current"]
        assert len(base) == len(cur) == 10
        assert base[0].get("fill") == _html.COLOURS[0]
        hatch = cur[0].get("fill", "")
        assert hatch.startswith("url(#") and cur[0].get("stroke"), "current is hatched, outlined"
        assert root.find(f".//{NS}pattern[@id='{hatch[5:-1]}']") is not None

    def test_edges_infinite_or_nan_are_named_not_broken(self) -> None:
        svg = _html.histogram(
            "x", [1, 1, 1, 1], [1, 1, 1, 1], edges=[-math.inf, 0.000123456, 1e9, math.nan, math.inf]
        )
        check_geometry(svg)
        assert texts(svg, "tick-x") == ["-inf", "0.0001235", "1e9", "nan", "inf"]

    def test_categorical_names_categories_cut_with_tooltip(self) -> None:
        """Sixty categories: every name under its bars, turned; long names cut with an ellipsis
        and the full name as tooltip; neighbouring labels at least a line apart."""
        cats = [f"c{i}" if i % 7 else f"a category with a long name {i}" for i in range(60)]
        rng = random.Random(0)
        svg = _html.histogram(
            "merchant_category",
            [rng.random() for _ in cats],
            [rng.random() for _ in cats],
            categories=cats,
        )
        root = check_geometry(svg)
        labels = [e for e in root.iter(f"{NS}text") if e.get("class") == "category"]
        assert len(labels) == 60
        for label, name in zip(labels, cats, strict=True):
            shown = visible(label)
            assert shown == name or (shown.endswith("\u2026") and name.startswith(shown[:-1]))
            if shown != name:
                assert tooltip(label) == name
            assert "rotate(-45" in (label.get("transform") or "")
        xs = [num(e, "x") for e in labels]
        assert all(b - a >= 12 for a, b in itertools.pairwise(xs))

    def test_many_edges_thinned_apart_keeping_both_ends(self) -> None:
        edges = [i * 1234.5 for i in range(201)]
        svg = _html.histogram("card_id", [1] * 200, [2] * 200, edges=edges)
        root = check_geometry(svg)
        ticks = [e for e in root.iter(f"{NS}text") if e.get("class") == "tick-x"]
        assert visible(ticks[0]) == "0" and visible(ticks[-1]) == "2.469e5"
        xs = [num(e, "x") for e in ticks]
        assert len(ticks) > 20 and all(b - a >= 12 for a, b in itertools.pairwise(xs))

    @pytest.mark.parametrize(
        ("baseline", "current", "extra"),
        [
            ([], [], {}),
            ([], [], {"edges": []}),
            ([3.0], [1.0], {"edges": [0.0, 1.0]}),
            ([0, 0, 0], [0, 0, 0], {"edges": [0, 1, 2, 3]}),
            ([1e12, 1, 1, 1], [1, 1e12, 1, 1], {"edges": [0, 1, 2, 3, 4]}),
            ([], [1, 2], {"edges": [0, 1, 2]}),
            ([1, 2], [], {"categories": ["a", "b"]}),
            ([1, 2, 3], [1], {"edges": [0, 1]}),  # edges of the wrong length: no labels
            ([math.nan, -5, math.inf], [1, 1, 1], {"categories": ["a"]}),
        ],
    )
    def test_edge_cases_stay_drawable(
        self, baseline: list[float], current: list[float], extra: dict[str, Any]
    ) -> None:
        """Each positive share has a visible bar; nothing else gets one; nothing is negative."""
        root = check_geometry(_html.histogram("f", baseline, current, **extra))
        assert_bars_match(root, baseline, current)

    def test_every_bin_count_up_to_200(self) -> None:
        """The blank `card_id` histogram had `width="-0.1"`: no bin count may produce that."""
        rng = random.Random(15)
        for n in [*range(201), 300, 500, 1000, 3000]:  # past 240 bins, slots are < 4 px
            baseline = [rng.choice([0.0, rng.random(), rng.random() * 1e6]) for _ in range(n)]
            current = [rng.random() for _ in range(n)]
            edges = sorted(rng.uniform(-1e9, 1e9) for _ in range(n + 1))
            for extra in ({"edges": edges}, {"categories": [f"v{i}" for i in range(n)]}):
                root = check_geometry(_html.histogram("f", baseline, current, **extra))
                assert_bars_match(root, baseline, current)

    @given(
        st.integers(0, 600).flatmap(
            lambda n: st.tuples(
                st.lists(st.floats(), min_size=n, max_size=n),
                st.lists(st.floats(), max_size=n + 2),
                st.one_of(
                    st.none(),
                    st.lists(st.floats(), min_size=n + 1, max_size=n + 1),
                    st.lists(st.text(max_size=40), min_size=n, max_size=n),
                ),
            )
        )
    )
    @hsettings(max_examples=80)
    def test_any_data_gives_well_formed_finite_svg(
        self, data: tuple[list[float], list[float], list[float] | list[str] | None]
    ) -> None:
        baseline, current, axis = data
        extra: dict[str, Any] = {}
        if axis and isinstance(axis[0], str):
            extra["categories"] = axis
        elif axis is not None:
            extra["edges"] = axis
        root = check_geometry(_html.histogram("f", baseline, current, **extra))
        assert_bars_match(root, baseline, current)


def assert_bars_match(
    root: ET.Element, baseline: Sequence[float], current: Sequence[float]
) -> None:
    """One visible bar (>= 1 px high, > 0 wide) per positive finite count, per series."""
    for cls, values in (("bar-baseline", baseline), ("bar-current", current)):
        bars = [r for r in root.iter(f"{NS}rect") if r.get("class") == cls]
        positive = [v for v in values if math.isfinite(v) and v > 0]
        assert len(bars) == len(positive), cls
        assert all(num(r, "height") >= 1 and num(r, "width") > 0 for r in bars)


class TestEscaping:
    def test_hostile_names_are_text_not_markup(self) -> None:
        """Feature names, categories and cohort values are user data: shown, never run."""
        charts = [
            _html.histogram(HOSTILE, [1, 2], [2, 1], categories=[HOSTILE, "ok"], x_label=HOSTILE),
            _html.histogram("f", [1], [1], edges=[0, 1], y_label=HOSTILE),
            _html.line_chart(HOSTILE, {HOSTILE: curve(2)}, x_label=HOSTILE, y_label=HOSTILE),
        ]
        for svg in charts:
            assert "<script" not in svg
            root = tree(svg)
            assert not list(root.iter(f"{NS}script"))
            assert HOSTILE in [visible(e) for e in root.iter(f"{NS}text")] + [
                e.text for e in root.iter(f"{NS}title")
            ]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Two pages rendered once: a ROC chart, and the histograms (so their colours stay apart).

    The third ROC series has no curve (one class only): its green can only come from the
    legend's swatch.
    """
    folder = tmp_path_factory.mktemp("reports")
    roc_chart = _html.line_chart(
        "ROC by channel",
        {
            "web (AUC 0.812, n=1,234)": curve(3),
            "app (AUC 0.701, n=567)": curve(1.5),
            f"{HOSTILE} (AUC 0.650, n=12)": [],
        },
        x_label="false positive rate",
        y_label="true positive rate",
    )
    rng = random.Random(3)
    cats = [f"category_{i}" for i in range(59)] + [HOSTILE]
    hists = [
        (
            "amount",
            _html.histogram(
                "amount",
                [rng.random() for _ in range(10)],
                [rng.random() for _ in range(10)],
                edges=[0, 3.2, 7.9, 12.5, 20.123, 33.3, 60, 99.9, 150, 400, 12345.678],
                x_label="amount",
            ),
        ),
        (
            "merchant_category",
            _html.histogram(
                "merchant_category",
                [rng.random() for _ in cats],
                [rng.random() for _ in cats],
                categories=cats,
                x_label="merchant_category",
            ),
        ),
    ]
    pages = {
        "roc": _html.page("evaluate", [("ROC by channel", roc_chart)]),
        "drift": _html.page(f"drift {HOSTILE}", hists),
    }
    out: dict[str, tuple[str, Path]] = {}
    for name, content in pages.items():
        path = _html.write(folder / f"{name}.html", content)
        out[name] = render(path, folder)  # type: ignore[no-untyped-call]
    return out


def dom_texts(dom: str, cls: str) -> list[str]:
    """The visible text of the rendered DOM's <text class=cls> elements (tooltips dropped)."""
    found = re.findall(rf'<text class="{cls}"[^>]*>(.*?)</text>', dom, flags=re.S)
    return [html.unescape(re.sub(r"<title>.*?</title>", "", t, flags=re.S)) for t in found]


def pixels(shot: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(shot).convert("RGB"))


def where(image: np.ndarray, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero((image == colour).all(axis=2))
    return rows, cols


@pytest.mark.integration  # renders in headless Chromium, which `make test` installs
class TestRenderedReports:
    def test_roc_axes_ticks_and_legend_in_the_dom(
        self, rendered: dict[str, tuple[str, Path]]
    ) -> None:
        dom, _ = rendered["roc"]
        assert dom_texts(dom, "tick-x") == TICKS
        assert dom_texts(dom, "tick-y") == TICKS
        assert dom_texts(dom, "axis-label") == ["false positive rate", "true positive rate"]
        assert dom_texts(dom, "legend-entry") == [
            "web (AUC 0.812, n=1,234)",
            "app (AUC 0.701, n=567)",
            f"{HOSTILE} (AUC 0.650, n=12)",
        ]

    def test_roc_curve_and_legend_are_drawn(self, rendered: dict[str, tuple[str, Path]]) -> None:
        """The blue curve shows; the legend shows too: the green of the curveless series sits
        in a swatch (about 22 x 4 px) with the blue swatch a row above and text to its right."""
        _, shot = rendered["roc"]
        image = pixels(shot)
        blue_rows, blue_cols = where(image, BLUE)
        assert len(blue_rows) > 200, "no ROC curve drawn"
        rows, cols = where(image, GREEN)
        assert len(rows), "the legend's swatch is not drawn"
        assert 18 <= cols.max() - cols.min() + 1 <= 26 and rows.max() - rows.min() + 1 <= 6
        above = (blue_cols >= cols.min()) & (blue_cols <= cols.max())
        above &= (blue_rows < rows.min() - 20) & (blue_rows > rows.min() - 50)
        assert above.sum() >= 40, "no blue swatch two rows above in the legend"
        beside = image[rows.min() - 6 : rows.max() + 6, cols.max() + 4 : cols.max() + 200]
        assert (beside.mean(axis=2) < 128).sum() > 100, "no legend text beside the swatch"

    def test_histograms_name_edges_categories_and_series(
        self, rendered: dict[str, tuple[str, Path]]
    ) -> None:
        dom, _ = rendered["drift"]
        assert dom_texts(dom, "tick-x") == [
            "0", "3.2", "7.9", "12.5", "20.12", "33.3", "60", "99.9", "150", "400", "1.235e4"
        ]  # fmt: skip
        categories = dom_texts(dom, "category")
        assert categories[:59] == [f"category_{i}" for i in range(59)]
        assert categories[59] == HOSTILE[:13] + "\u2026"
        assert f"<title>{html.escape(HOSTILE, quote=False)}</title>" in dom
        assert dom_texts(dom, "legend-entry") == ["baseline", "current"] * 2
        assert "0%" in dom_texts(dom, "tick-y")

    def test_histogram_bars_of_both_series_drawn(
        self, rendered: dict[str, tuple[str, Path]]
    ) -> None:
        _, shot = rendered["drift"]
        image = pixels(shot)
        assert len(where(image, BLUE)[0]) > 500, "no baseline bars"
        assert len(where(image, RED)[0]) > 500, "no current bars"

    def test_hostile_names_render_as_text(self, rendered: dict[str, tuple[str, Path]]) -> None:
        for dom, _ in rendered.values():
            assert "<script" not in dom
            assert "&lt;script&gt;" in dom
