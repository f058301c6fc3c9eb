"""The analytics' SQL against in-memory references: exact weighted AUC and KS, weighted
deciles, identifier-like features, the rule for flagging drift, hostile feature names.

The engine is DuckDB over small tables; tests/test_engine_parity.py runs the same
queries on Spark.
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from predlog.testing import build_batch
from predlog.tools.analytics import _distribution as dist
from predlog.tools.analytics import drift, investigate, weighted_auc
from predlog.tools.analytics._features import classify
from predlog.tools.analytics._ranking import auc_and_roc
from predlog.tools.analytics.engine import Engine, ident, json_path, literal

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


class Plain(Engine):
    """DuckDB over tables a test registers: the engine interface, nothing else."""

    name = "duckdb"
    dialect = "duckdb"
    where = "memory"

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.columns: set[str] = set()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def materialise(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE TABLE {name} AS {sql}")

    def outcomes(self, path: Path) -> set[str]:
        raise NotImplementedError

    def close(self) -> None:
        self.con.close()

    def table(self, name: str, **columns: Any) -> None:
        self.con.register(f"{name}_arrow", pa.table(columns))
        self.materialise(name, f"SELECT * FROM {name}_arrow")


def ranked(seed: int, n: int = 2_000) -> dict[str, Any]:
    """Scores with many ties, labels, weights and a two-valued cohort."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = np.round(rng.normal(np.where(y, 0.6, 0.45), 0.2), 3)
    w = rng.choice([1.0, 2.5, 20.0], n)
    return {"s": s, "y": y, "w": w, "c": np.where(rng.random(n) < 0.4, "web", "pos")}


@pytest.fixture(params=[4, 1024])
def buckets(request, monkeypatch):
    """The running sums split into few ranges (long windows) and many (short ones)."""
    monkeypatch.setattr("predlog.tools.analytics._ranking.BUCKETS", request.param)
    return request.param


@pytest.mark.usefixtures("buckets")
class TestAuc:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_equals_scikit_learn_overall_and_per_cohort(self, seed):
        """Weighted, ties counting one half, per cohort value: exactly scikit-learn's."""
        data = ranked(seed)
        assert len(np.unique(data["s"])) < len(data["s"]) / 2, "ties"
        eng = Plain()
        eng.table("j", **data)
        overall = auc_and_roc(eng, "j", None)[None][0]
        assert overall == pytest.approx(
            roc_auc_score(data["y"], data["s"], sample_weight=data["w"]), abs=1e-12
        )
        per = auc_and_roc(eng, "j", "c")
        for value in ("web", "pos"):
            m = data["c"] == value
            expected = roc_auc_score(data["y"][m], data["s"][m], sample_weight=data["w"][m])
            assert per[value][0] == pytest.approx(expected, abs=1e-12)

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([-3.0, -0.5, 0.0, 0.25, 0.25, 0.5, 1.0, 7.5, 1e9]),
                st.booleans(),
                st.sampled_from([0.5, 1.0, 3.0]),
            ),
            min_size=2,
            max_size=40,
        )
    )
    def test_any_scores_even_outside_zero_one(self, rows):
        """Logits, huge and equal scores: the SQL equals the in-memory reference."""
        s, y, w = (np.array(col) for col in zip(*rows, strict=True))
        eng = Plain()
        eng.table("j", s=s, y=y, w=w)
        got = auc_and_roc(eng, "j", None)[None][0]
        expected = weighted_auc(y, s, w)
        if np.isnan(expected):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-12)

    def test_roc_curve_runs_from_zero_to_one(self):
        data = ranked(4)
        eng = Plain()
        eng.table("j", **data)
        _, roc = auc_and_roc(eng, "j", None)[None]
        assert roc[0] == (0.0, 0.0)
        assert roc[-1] == pytest.approx((1.0, 1.0))
        assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in itertools.pairwise(roc))


def weighted_cdf_gap(a, wa, b, wb) -> float:
    """The KS statistic of two weighted samples, the plain way."""
    values = np.union1d(a, b)
    fa = np.array([wa[a <= v].sum() for v in values]) / wa.sum()
    fb = np.array([wb[b <= v].sum() for v in values]) / wb.sum()
    return float(np.abs(fa - fb).max())


@pytest.mark.usefixtures("buckets")
class TestDistribution:
    def compared(self, seed: int):
        rng = np.random.default_rng(seed)
        a = np.round(rng.normal(0, 1, 800), 2)  # ties
        b = np.round(rng.normal(0.3, 1.2, 700), 2)
        wa, wb = rng.choice([1.0, 10.0], 800), rng.choice([1.0, 4.0], 700)
        eng = Plain()
        eng.table(
            "t",
            cur=np.r_[np.zeros(800, bool), np.ones(700, bool)],
            w=np.r_[wa, wb],
            v=np.r_[a, b],
        )
        return eng, (a, wa, b, wb)

    @pytest.mark.parametrize("seed", [5, 6])
    def test_ks_and_weighted_deciles(self, seed):
        eng, (a, wa, b, wb) = self.compared(seed)
        base, cur, lo, hi, _ = dist.sides(eng, "t", "v", numeric=True)
        assert base.mean == pytest.approx(np.average(a, weights=wa))
        assert base.effective_n == pytest.approx(wa.sum() ** 2 / (wa**2).sum())
        statistic, inner = dist.ks_and_deciles(eng, "t", "v", (lo, hi), (base, cur))
        assert statistic == pytest.approx(weighted_cdf_gap(a, wa, b, wb), abs=1e-12)
        summed, again = dist.ks_and_deciles(
            eng, "t", "v", (lo, hi), (base, cur), distinct=len(np.unique(np.r_[a, b]))
        )
        assert (summed, again) == (pytest.approx(statistic, abs=1e-12), inner)
        order = np.argsort(a, kind="stable")
        share = np.cumsum(wa[order]) / wa.sum()
        expected = sorted(
            {float(a[order][np.argmax(share >= q - 1e-12)]) for q in dist.DECILES} - {float(lo)}
        )
        assert inner == pytest.approx(expected)
        b_bins, c_bins = dist.binned(eng, "t", "v", inner)
        # Bins closed on the right: (-inf, e1], (e1, e2], ..., (e9, inf).
        assert b_bins == pytest.approx(right_closed(a, wa, inner))
        assert c_bins == pytest.approx(right_closed(b, wb, inner))

    def test_a_value_most_records_share_is_a_bin_of_its_own(self):
        """95% zeros in the baseline, half in the current: PSI sees it (every decile of
        the baseline is 0, and the bins still separate 0 from the rest)."""
        rng = np.random.default_rng(9)
        a = np.where(rng.random(2000) < 0.95, 0.0, rng.integers(1, 9, 2000))
        b = np.where(rng.random(2000) < 0.5, 0.0, rng.integers(1, 9, 2000))
        eng = Plain()
        eng.table(
            "t",
            cur=np.r_[np.zeros(2000, bool), np.ones(2000, bool)],
            w=np.ones(4000),
            v=np.r_[a, b],
        )
        base, cur, lo, hi, _ = dist.sides(eng, "t", "v", numeric=True)
        _, inner = dist.ks_and_deciles(eng, "t", "v", (lo, hi), (base, cur))
        assert inner == [0.0]
        b_bins, c_bins = dist.binned(eng, "t", "v", inner)
        assert dist.psi(b_bins, c_bins) > 1.0

    def test_categories_past_the_most_come_back_as_one(self):
        """A wide text feature: the engine returns the top categories and one sum of the
        rest, not a row per category."""
        eng = Plain()
        values = np.array([f"v{i}" for i in range(5000)])
        eng.table("t", cur=np.arange(5000) % 2 == 0, w=np.ones(5000), v=values)
        names, b, c = dist.categories(eng, "t", "v")
        assert len(names) == dist.MAX_CATEGORIES + 1
        assert names[-1] == dist.OTHER
        assert b.sum() + c.sum() == 5000


def right_closed(values, weights, inner):
    index = np.searchsorted(np.asarray(inner), values, side="left")
    return np.bincount(index, weights=weights, minlength=len(inner) + 1)


def frame(values: list[Any]) -> list[dict[str, Any]]:
    return [{"x": v} for v in values]


class TestClassify:
    def test_kinds(self):
        rng = np.random.default_rng(0)
        base = [
            {
                "transaction_id": f"tx-{i}",
                "card_id": f"card-{rng.integers(400)}",
                "customer_number": 10_000 + i,
                "amount": round(float(rng.lognormal(3, 1)), 2),
                "hour": int(rng.integers(24)),
                "merchant_category": str(rng.choice(["grocery", "fuel", "travel"])),
                "flag": bool(rng.random() < 0.5),
                "always_null": None,
            }
            for i in range(1_500)
        ]
        kinds = {f.name: f.kind for f in classify([base, base[:150]])}
        assert kinds == {
            "transaction_id": "identifier",
            "card_id": "identifier",
            "customer_number": "identifier",
            "amount": "numerical",
            "hour": "numerical",
            "merchant_category": "categorical",
            "flag": "categorical",
            "always_null": "empty",
        }

    def test_a_few_values_that_are_not_numbers_leave_a_feature_numerical(self):
        """Two "n/a" among two thousand amounts, and amounts written as text: numbers."""
        values = [float(i % 97) for i in range(2000)]
        values[5] = values[700] = "n/a"
        text = [f"{i % 89}.50" for i in range(2000)]
        kinds = {
            f.name: f.kind
            for f in classify([[{"a": v, "t": t} for v, t in zip(values, text, strict=True)]] * 2)
        }
        assert kinds == {"a": "numerical", "t": "numerical"}

    def test_few_records_are_not_called_identifiers(self):
        """Ten records with ten distinct categories say nothing about uniqueness."""
        kinds = {f.name: f.kind for f in classify([frame(list("abcdefghij"))] * 2)}
        assert kinds == {"x": "categorical"}


def write_layout(root: Path, records: list[dict[str, Any]], weights: np.ndarray) -> Path:
    """Records in predlog's layout, with the given sample weights."""
    batch = build_batch(records, model_name="m", model_version="1", install_signal_handlers=False)
    table = pa.Table.from_batches([batch])
    index = table.schema.get_field_index("sample_weight")
    table = table.set_column(index, "sample_weight", pa.array(weights, pa.float64()))
    out = root / "predictions" / "date=2026-10-01"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "part-0.parquet")
    return root


def demo_like(root: Path, n_each: int, *, names: dict[str, str] | None = None) -> Path:
    """Two ranges from one generator: nothing drifted."""
    rng = np.random.default_rng(148)
    names = names or {}
    records = []
    for i in range(2 * n_each):
        features = {
            "transaction_id": f"tx-{i:05d}",
            "card_id": f"card-{rng.integers(400)}",
            "amount": round(float(rng.lognormal(3.4, 1.0)), 2),
            "merchant_category": str(
                rng.choice(["grocery", "fuel", "travel", "online", "dining", "pharmacy", "toys"])
            ),
        }
        features = {names.get(k, k): v for k, v in features.items()}
        records.append(
            {
                "request_id": f"r-{i}",
                "features": features,
                "score": float(rng.random()),
                "timestamp": START + timedelta(hours=i * 168 / n_each),
            }
        )
    return write_layout(root, records, np.ones(len(records)))


def shift_amount(root: Path, factor: float = 3.0) -> Path:
    """Multiply ``amount`` in the current range's records by ``factor``."""
    (path,) = (root / "predictions").rglob("*.parquet")
    table = pq.read_table(path)
    features = [json.loads(f) for f in table.column("features").to_pylist()]
    for f, ts in zip(features, table.column("timestamp_utc").to_pylist(), strict=True):
        if ts >= datetime(2026, 10, 8, tzinfo=timezone.utc):
            f["amount"] *= factor
    index = table.schema.get_field_index("features")
    table = table.set_column(index, "features", pa.array([json.dumps(f) for f in features]))
    pq.write_table(table, path)
    return root


RANGES = {"baseline": "2026-10-01..2026-10-08", "current": "2026-10-08..2026-10-15"}


class TestDriftRule:
    def test_small_samples_and_identifiers_are_not_flagged(self, tmp_path):
        """148 against 152 records of one generator: nothing flagged, the identifiers said to
        be identifiers, and a large PSI on a category explained as too few records."""
        report = drift(**RANGES, data_dir=demo_like(tmp_path, 150))
        assert report["drifted"] == []
        assert sorted(report["identifiers"]) == ["card_id", "transaction_id"]
        for name in ("card_id", "transaction_id"):
            assert report["features"][name]["kind"] == "identifier"
            assert report["features"][name]["psi"] is None
            assert "identifier-like" in report["features"][name]["note"]
        category = report["features"]["merchant_category"]
        assert category["noise"] > 0.1 * report["psi_threshold"]
        assert "PSI > 0.2" in report["rule"]

    def test_a_large_enough_shift_is_flagged(self, tmp_path):
        report = drift(**RANGES, data_dir=shift_amount(demo_like(tmp_path, 3_000)))
        assert report["drifted"] == ["amount"]

    def test_a_shift_on_too_few_records_is_reported_not_flagged(self, tmp_path):
        """40 records a side: a tripled amount shows in PSI and KS, but PSI's noise at that
        size is larger than the threshold, so the report says so instead of flagging."""
        report = drift(**RANGES, data_dir=shift_amount(demo_like(tmp_path, 40)))
        amount = report["features"]["amount"]
        assert amount["psi"] > report["psi_threshold"]
        assert amount["ks"]["p_value"] < 0.01
        assert not amount["drifted"]
        assert amount["note"].startswith("too few records to flag")
        assert report["drifted"] == []

    def test_exclude_by_argument_and_by_setting(self, tmp_path, monkeypatch):
        root = demo_like(tmp_path, 150)
        report = drift(**RANGES, data_dir=root, exclude=["amount"])
        assert report["features"]["amount"]["kind"] == "excluded"
        monkeypatch.setenv("PREDLOG_DRIFT_EXCLUDE", "merchant_category")
        report = drift(**RANGES, data_dir=root)
        assert report["features"]["merchant_category"]["kind"] == "excluded"
        assert report["features"]["amount"]["kind"] == "numerical"

    def test_hostile_feature_names(self, tmp_path):
        """Names with quotes, SQL and JSON path syntax are features like any other."""
        names = {
            "amount": "amount'); DROP TABLE predictions; --",
            "merchant_category": 'cat"egory $.x[0]',
            "card_id": "card id.with dots",
        }
        report = drift(**RANGES, data_dir=demo_like(tmp_path, 150, names=names))
        assert set(report["features"]) == {*names.values(), "transaction_id"}
        assert report["features"][names["amount"]]["kind"] == "numerical"
        assert report["features"][names["amount"]]["n"]["baseline"] == 150
        assert report["features"][names["merchant_category"]]["kind"] == "categorical"


class TestHostileData:
    def test_malformed_feature_json_is_a_null_not_an_error(self, tmp_path):
        root = demo_like(tmp_path, 150)
        (path,) = (root / "predictions").rglob("*.parquet")
        table = pq.read_table(path)
        docs = table.column("features").to_pylist()
        docs[3] = docs[200] = "{not json"
        index = table.schema.get_field_index("features")
        pq.write_table(table.set_column(index, "features", pa.array(docs)), path)
        report = drift(**RANGES, data_dir=root)
        assert report["features"]["amount"]["n"]["baseline"] == 149
        (found,) = investigate("r-5", data_dir=root)
        assert found["comparison"]["amount"]["population_n"] == 298

    @pytest.mark.parametrize("size", [20_000, 2_000])
    def test_features_seen_only_late_in_a_range_are_found(self, tmp_path, monkeypatch, size):
        """Records with time-ordered ids: a feature that starts late in the current range
        is still sampled (the sample is drawn from the whole range). At 2,000 the sample first
        cuts by the ids' last digits, then orders."""
        monkeypatch.setattr("predlog.tools.analytics._features.SAMPLE", size)
        records = []
        for i in range(2 * 25_000):
            features: dict[str, Any] = {"amount": i % 100}
            if i >= 48_000:
                features["promo_code"] = f"p{i % 5}"
            records.append(
                {
                    "request_id": f"r{i}",
                    "features": features,
                    "score": 0.5,
                    "timestamp": START + timedelta(seconds=i * 24),
                }
            )
        root = write_layout(tmp_path, records, np.ones(len(records)))
        report = drift(
            baseline="2026-10-01..2026-10-07T22:40:00",
            current="2026-10-07T22:40:00..2026-10-15",
            data_dir=root,
        )
        assert report["current"]["n"] == 25_000
        assert "promo_code" in report["features"]

    def test_scores_across_the_whole_double_range(self, tmp_path):
        eng = Plain()
        eng.table(
            "j",
            s=np.array([-1.5e308, 1.5e308, 0.0, 1.0]),
            y=np.array([False, True, False, True]),
            w=np.ones(4),
        )
        assert auc_and_roc(eng, "j", None)[None][0] == 1.0


class TestSqlText:
    @pytest.mark.parametrize("text", ["plain", "it's", 'a "b"', "back\\slash", "ünï", "--;"])
    def test_literals_and_identifiers_round_trip(self, text):
        con = duckdb.connect()
        row = con.execute(f"SELECT {literal(text)} AS {ident(text)}").fetchall()
        assert row == [(text,)]
        assert con.execute(f"SELECT {literal(text)} AS {ident(text)}").description[0][0] == text
        doc = json.dumps({text: 7})
        assert con.execute(
            f"SELECT json_extract_string({literal(doc)}, {json_path(text)})"
        ).fetchall() == [("7",)]


class TestInvestigate:
    def test_percentiles_are_weighted(self, tmp_path):
        """A record ranks among the population the sample stands for: 9 records weighted
        10 below it outweigh 10 records weighted 1 above it."""
        records = [
            {"request_id": f"r{i}", "features": {"x": i}, "score": 0.5, "timestamp": START}
            for i in range(20)
        ]
        weights = np.where(np.arange(20) < 10, 10.0, 1.0)
        root = write_layout(tmp_path, records, weights)
        (found,) = investigate("r9", data_dir=root)
        expected = 100 * weights[:10].sum() / weights.sum()
        assert found["comparison"]["x"]["population_percentile"] == round(expected, 1)
        assert expected != pytest.approx(50.0)


class TestCommandLine:
    def test_engine_options_and_their_errors(self, tmp_path):
        """--exclude takes a list with spaces; a bad --memory-limit is one line naming it;
        the scratch directory is gone afterwards."""
        from tests.helpers import predlog_cli

        root = demo_like(tmp_path / "data", 150)
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        args = ("drift", "--baseline", RANGES["baseline"], "--current", RANGES["current"])
        done = predlog_cli(
            *args,
            "--data",
            str(root),
            "--exclude",
            "amount, merchant_category",
            "-o",
            "json",
            "--memory-limit",
            "256MB",
            TMPDIR=str(scratch),
        )
        assert done.returncode == 0, done.stderr
        kinds = {k: f["kind"] for k, f in json.loads(done.stdout)["features"].items()}
        assert kinds["amount"] == kinds["merchant_category"] == "excluded"
        assert list(scratch.iterdir()) == []
        for bad in ("lots", "10KB", "-1GB"):
            refused = predlog_cli(*args, "--data", str(root), "--memory-limit", bad)
            assert refused.returncode == 1
            assert refused.stderr.strip().splitlines() == [
                f"predlog drift: --memory-limit: {bad!r} is not a size of at least 64MB "
                "such as 512MB or 2GB"
            ]

    def test_a_killed_run_leaves_no_scratch_behind_the_next(self, tmp_path, monkeypatch):
        """A scratch directory of a process that is gone is removed by the next run."""
        root = demo_like(tmp_path / "data", 150)
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", None)
        stale = tmp_path / "predlog-analytics-999999999-abc"
        (stale / "spill").mkdir(parents=True)
        live = tmp_path / f"predlog-analytics-{os.getpid()}-other"
        live.mkdir()
        drift(**RANGES, data_dir=root)
        assert not stale.exists()
        assert live.exists()
