"""Answers from the prediction logs: investigate, evaluate, drift, replay.

DuckDB over the Parquet layout (``<data>/predictions/date=YYYY-MM-DD/*.parquet``),
the same whether the files were written by :class:`~predlog.ParquetSink` or by
``predlog sink`` from Kafka. Needs the ``analytics`` extra.
"""

from __future__ import annotations

from predlog.tools.analytics._data import AnalyticsError, Predictions, check_range
from predlog.tools.analytics._drift import drift, parse_range
from predlog.tools.analytics._evaluate import evaluate, weighted_auc
from predlog.tools.analytics._investigate import investigate
from predlog.tools.analytics._replay import replay
from predlog.tools.analytics._stages import Progress

__all__ = [
    "AnalyticsError",
    "Predictions",
    "Progress",
    "check_range",
    "drift",
    "evaluate",
    "investigate",
    "parse_range",
    "replay",
    "weighted_auc",
]
