"""Messages that point at the cause: bad ``--data``, ``--html`` and ranges, files that lack
columns, and how ``investigate`` writes what it found for a person."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import predlog
from predlog.__main__ import main
from predlog.tools.analytics import AnalyticsError, drift, investigate, replay
from tests.helpers import parquet_files

WIDE = "2000-01-01..2100-01-01"
#: Every column of a record, in the schema's order.
FIELD_NAMES = tuple(predlog.arrow_schema().names)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
HOSTILE = "<script>alert(1)</script>"


def half(features: dict[str, object]) -> float:
    """A scorer for ``replay``."""
    return 0.5


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """Five predictions of one card, and one of another; a written outcome file."""
    root = tmp_path_factory.mktemp("messages")
    with predlog.PredictionLogger(
        model_name="m",
        model_version="v1",
        data_dir=str(root / "data"),
        new_version_window_s=0,
        install_signal_handlers=False,
    ) as log:
        for i in range(6):
            log.log(
                request_id=f"r-{i}",
                features={
                    "income": 33440.0 + i,
                    "balance": 1234567.89,
                    "probability": 0.87312345,
                    "visits": 33440,
                    "card": "c1" if i < 5 else "c2",
                    "note": HOSTILE,
                },
                score=0.25 + i / 10,
                decision="approve",
                threshold=0.5,
                trace_id=TRACE_ID,
                feature_timestamps={"income": "2026-01-01T00:00:00Z"},
                reason=HOSTILE,
            )
    (root / "outcomes.csv").write_text(
        "request_id,bad\n" + "".join(f"r-{i},{i % 2}\n" for i in range(6))
    )
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``predlog ARGV`` in this process: exit status, stdout, stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Errno" not in err, err
    return lines[0]


class TestDataOption:
    @pytest.mark.parametrize("url", ["s3://", "gs://", "s3:///predictions", "gs:///x"])
    def test_a_url_without_a_bucket_is_refused_up_front(self, url, capsys):
        """``--data s3://`` names the option, the value, and that it names no bucket."""
        status, _, err = run(capsys, "investigate", "r-1", "--data", url)
        line = one_line(err)
        assert status == 2, err
        assert "'--data'" in line and repr(url) in line and "no bucket" in line, line

    def test_an_unknown_scheme_is_refused_naming_it(self, capsys):
        """An ``ftp://`` URL is refused before anything is read, naming the schemes taken."""
        status, _, err = run(
            capsys, "drift", "--baseline", WIDE, "--current", WIDE, "--data", "ftp://host/logs"
        )
        line = one_line(err)
        assert status == 2
        assert "'--data'" in line and "'ftp://host/logs'" in line and "s3://" in line, line

    def test_a_file_is_not_a_directory(self, tmp_path, capsys):
        """A file given as the data directory is said to be a file, not an empty layout."""
        file = tmp_path / "records.parquet"
        file.write_bytes(b"PAR1")
        status, _, err = run(capsys, "investigate", "r-1", "--data", str(file))
        line = one_line(err)
        assert status != 0
        assert str(file) in line and "not a directory" in line, line
        with pytest.raises(AnalyticsError, match="not a directory"):
            investigate("r-1", data_dir=file)

    def test_a_missing_directory_is_named(self, tmp_path, capsys):
        """A directory that does not exist is named as such."""
        missing = tmp_path / "nowhere"
        status, _, err = run(capsys, "investigate", "r-1", "--data", str(missing))
        line = one_line(err)
        assert status == 1 and str(missing) in line and "does not exist" in line, line

    def test_the_api_refuses_a_url_without_a_bucket(self):
        """The analytics check a data directory by the same declaration as the settings."""
        with pytest.raises(AnalyticsError, match="'s3://' names no bucket"):
            investigate("r-1", data_dir="s3://")


class TestHtmlOption:
    @pytest.mark.parametrize("command", ["investigate", "evaluate", "drift"])
    def test_a_missing_directory_is_named_before_any_work(
        self, command, logged, tmp_path, capsys, monkeypatch
    ):
        """``--html nowhere/page.html`` names the missing directory, before the analysis."""
        import predlog.tools.analytics

        def never(*args, **kwargs):
            raise AssertionError("the analysis ran before --html was checked")

        monkeypatch.setattr(predlog.tools.analytics, command, never)
        page = tmp_path / "no such dir" / "page.html"
        data = str(logged / "data")
        argv = {
            "investigate": ["investigate", "r-1"],
            "evaluate": ["evaluate", "--outcomes", str(logged / "outcomes.csv"), "--label", "bad"],
            "drift": ["drift", "--baseline", WIDE, "--current", WIDE],
        }[command]
        status, _, err = run(capsys, *argv, "--data", data, "--html", str(page))
        line = one_line(err)
        assert status == 2
        assert "'--html'" in line and repr(str(page.parent)) in line, line
        assert "does not exist" in line, line


class TestRanges:
    @pytest.mark.parametrize("option", ["--baseline", "--current"])
    def test_a_drift_range_ending_before_it_starts_is_named(self, option, logged, capsys):
        """A reversed range names its option and both dates, not "no predictions"."""
        argv = ["drift", "--baseline", WIDE, "--current", WIDE, "--data", str(logged / "data")]
        argv[argv.index(option) + 1] = "2026-11-08..2026-11-01"
        status, _, err = run(capsys, *argv)
        line = one_line(err)
        assert status == 2
        assert f"'{option}'" in line and "2026-11-08" in line and "2026-11-01" in line, line
        assert "before" in line and "no predictions" not in line, line

    def test_an_empty_drift_range_is_named(self, logged, capsys):
        """START..START holds nothing (END is exclusive), and says so."""
        status, _, err = run(
            capsys,
            "drift",
            "--baseline",
            "2026-11-01..2026-11-01T00:00:00Z",
            "--current",
            WIDE,
            "--data",
            str(logged / "data"),
        )
        line = one_line(err)
        assert status == 2 and "'--baseline'" in line and "empty" in line, line

    def test_the_api_refuses_a_reversed_range(self, logged):
        """``drift()`` itself refuses the reversed range, naming it."""
        with pytest.raises(AnalyticsError, match=r"2026-11-08\.\.2026-11-01.*before"):
            drift(baseline="2026-11-08..2026-11-01", current=WIDE, data_dir=logged / "data")

    def test_evaluate_until_before_since_is_named(self, logged, capsys):
        """``--until`` before ``--since`` names both options and both times."""
        status, _, err = run(
            capsys,
            "evaluate",
            "--outcomes",
            str(logged / "outcomes.csv"),
            "--label",
            "bad",
            "--data",
            str(logged / "data"),
            "--since",
            "2026-11-08",
            "--until",
            "2026-11-01T12:00",
        )
        line = one_line(err)
        assert status == 2
        assert "--since" in line and "--until" in line, line
        assert "2026-11-08" in line and "2026-11-01T12:00" in line and "before" in line, line


def without(logged: Path, tmp_path: Path, *dropped: str) -> Path:
    """The logged records rewritten without ``dropped`` columns, as an older or hand-made
    writer would leave them; the new data directory."""
    table = pa.concat_tables(pq.read_table(p) for p in parquet_files(logged / "data"))
    table = table.drop_columns([c for c in dropped if c in table.column_names])
    target = tmp_path / "data" / "predictions" / "date=2026-01-01"
    target.mkdir(parents=True)
    pq.write_table(table, target / "part-0.parquet")
    return tmp_path / "data"


#: What investigate shows of each column (None: shown only through another field).
SHOWN = {
    "prediction_id": "prediction_id",
    "timestamp_utc": "timestamp_utc",
    "raw_score": "score",
    "decision_threshold": "threshold",
    "decision": "decision",
    "model_confidence": "confidence",
    "feature_freshness_max_age_seconds": "freshness_max_age_seconds",
    "trace_id": "trace_id",
    "data_quality": "data_quality",
}


class TestMissingColumns:
    @pytest.mark.parametrize("column", [c for c in FIELD_NAMES if c != "request_id"])
    def test_investigate_shows_a_missing_column_as_absent(self, column, logged, tmp_path, capsys):
        """Files without a column (older or hand-made) are investigated; the field is absent."""
        data = without(logged, tmp_path, column)
        (record,) = investigate("r-1", data_dir=data, html_path=tmp_path / "page.html")
        if column in SHOWN:
            assert record[SHOWN[column]] in (None, []), record
        page = (tmp_path / "page.html").read_text()
        assert HOSTILE not in page
        assert ("&lt;script&gt;" in page) == (column != "features"), "shown, escaped"
        status, out, err = run(capsys, "investigate", "r-1", "--data", str(data))
        assert status == 0, err
        assert "None" not in out and "request r-1" in out, out

    def test_only_request_ids(self, logged, tmp_path, capsys):
        """A file holding nothing but request ids still answers, with every field absent."""
        data = without(logged, tmp_path, *(c for c in FIELD_NAMES if c != "request_id"))
        (record,) = investigate("r-1", data_dir=data)
        assert record["decision"] is None and record["model"] is None
        assert record["features"] == {} and record["prediction_id"] is None
        status, out, err = run(capsys, "investigate", "r-1", "--data", str(data))
        assert status == 0, err
        assert out.strip() == "request r-1", out

    def test_no_request_id_column_is_named(self, logged, tmp_path, capsys):
        """Without a request_id column nothing can be found: the message says which column."""
        data = without(logged, tmp_path, "request_id")
        status, _, err = run(capsys, "investigate", "r-1", "--data", str(data))
        line = one_line(err)
        assert status == 1 and "no column request_id" in line, line

    def test_replay_without_decision_columns(self, logged, tmp_path, capsys):
        """replay reads the score, decision and threshold; files without them replay too."""
        data = without(logged, tmp_path, "decision", "decision_threshold", "model_version")
        (result,) = replay("r-1", model="tests.test_messages:half", data_dir=data)
        assert result["logged"]["decision"] is None and result["threshold"] is None

    @pytest.mark.parametrize("command", ["evaluate", "drift"])
    def test_evaluate_and_drift_without_optional_columns(self, command, logged, tmp_path, capsys):
        """Files without the decision, the cohorts or the freshness: evaluate and drift
        answer, or name in one line the columns they cannot do without."""
        optional = (
            "decision",
            "decision_threshold",
            "user_segment",
            "channel",
            "geographic_region",
            "feature_freshness_max_age_seconds",
            "extra",
        )
        data = str(without(logged, tmp_path, *optional))
        argv = {
            "evaluate": ["evaluate", "--outcomes", str(logged / "outcomes.csv"), "--label", "bad"],
            "drift": ["drift", "--baseline", WIDE, "--current", WIDE],
        }[command]
        status, _, err = run(capsys, *argv, "--data", data)
        if status != 0:  # a column it cannot do without: named, in one line
            line = one_line(err)
            named = re.search(r"no column (.+?) \(found", line)
            assert named and set(named[1].split(", ")) <= set(optional), line


def line_of(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith(name + " "))


class TestInvestigateText:
    def test_numbers_as_people_write_them(self, logged, capsys):
        """Whole digits are never lost to an exponent; a probability keeps four digits."""
        status, out, err = run(capsys, "investigate", "r-1", "--data", str(logged / "data"))
        assert status == 0, err
        assert "e+" not in out, out
        assert line_of(out, "income").split()[1] == "33441"
        assert line_of(out, "balance").split()[1] == "1234568"
        assert line_of(out, "visits").split()[1] == "33440"
        assert line_of(out, "probability").split()[1] == "0.8731"

    def test_fields_without_data_are_left_out(self, logged, capsys):
        """No freshness recorded: no freshness shown (not ``freshness - s``)."""
        status, out, err = run(capsys, "investigate", "r-1", "--data", str(logged / "data"))
        assert status == 0, err
        assert "freshness" not in out and " - " not in out, out

    def test_freshness_when_there_is_some(self, tmp_path, capsys):
        """Recorded freshness is shown in seconds, STALE past the limit."""
        with predlog.PredictionLogger(
            data_dir=str(tmp_path / "data"), install_signal_handlers=False
        ) as log:
            log.log(
                request_id="f",
                features={"a": 1},
                score=0.1,
                feature_freshness_max_age_seconds=7200.0,
            )
        status, out, err = run(capsys, "investigate", "f", "--data", str(tmp_path / "data"))
        assert status == 0, err
        assert "freshness 7200 s STALE" in out, out

    def test_user_key_says_how_many_records_it_compared_with(self, logged, capsys):
        """``--user-key card`` says how many of that card's predictions it ranked against."""
        data = str(logged / "data")
        status, out, err = run(capsys, "investigate", "r-1", "--data", data, "--user-key", "card")
        assert status == 0, err
        assert re.search(r"own history: 5 predictions with card = 'c1'", out), out
        status, out, err = run(capsys, "investigate", "r-5", "--data", data, "--user-key", "card")
        assert re.search(r"own history: 1 prediction with card = 'c2'", out), out
        (record,) = investigate("r-1", data_dir=data, user_key="card")
        assert record["own_history"] == {"key": "card", "value": "c1", "n": 5}

    def test_user_key_not_among_the_features_is_said(self, logged, capsys):
        """A ``--user-key`` the record does not carry is said, not silently ignored."""
        data = str(logged / "data")
        status, out, err = run(capsys, "investigate", "r-1", "--data", data, "--user-key", "cardd")
        assert status == 0, err
        assert "own history: the record has no value for feature 'cardd'" in out, out

    def test_control_characters_from_records_are_escaped(self, tmp_path, capsys):
        """A feature value carrying terminal escapes is printed escaped, not executed."""
        with predlog.PredictionLogger(
            data_dir=str(tmp_path / "data"), install_signal_handlers=False
        ) as log:
            log.log(request_id="x", features={"name": "\x1b[2Jgone"}, score=0.1)
        status, out, err = run(capsys, "investigate", "x", "--data", str(tmp_path / "data"))
        assert status == 0, err
        assert "\x1b" not in out and "\\u001b[2Jgone" in out, out
