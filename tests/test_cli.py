"""The ``predlog`` command: where its settings come from, and how it reports bad ones."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from services.bentoserve import free_port

from predlog.__main__ import main
from predlog._settings import env_var
from predlog.errors import ConfigError
from predlog.sinks.kafka._consumer import ConsumerStats


@dataclass
class _Stats:
    consumed: int = 0


class TestSettings:
    @pytest.mark.parametrize(
        "argv",
        [
            ["investigate", "tx-1"],
            ["evaluate", "--outcomes", "outcomes.csv", "--label", "fraud"],
        ],
    )
    def test_malformed_data_dir_is_one_line_naming_the_variable(self, argv, monkeypatch, capsys):
        """A data_dir setting that fails its check ends the command with one line naming
        PREDLOG_DATA_DIR and exit status 1, not a traceback."""
        import predlog.analytics._data

        def reject_data_dir(name, environ=None):
            assert name == "data_dir"
            raise ConfigError(env_var(name), "must be a directory path, got 'x'")

        monkeypatch.setattr(predlog.analytics._data, "read", reject_data_dir)
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err == f"predlog {argv[0]}: PREDLOG_DATA_DIR: must be a directory path, got 'x'\n"

    def test_declared_default_data_dir_without_the_variable(self, tmp_path, monkeypatch, capsys):
        """With neither --data nor PREDLOG_DATA_DIR, the command looks in ./predlog-data."""
        monkeypatch.chdir(tmp_path)
        assert main(["investigate", "tx-1"]) == 1
        assert capsys.readouterr().err == (
            "predlog investigate: data directory predlog-data does not exist "
            "(set --data or PREDLOG_DATA_DIR)\n"
        )

    def test_sink_reads_kafka_and_data_dir_settings(self, tmp_path, monkeypatch, capsys):
        """`predlog sink` takes bootstrap, topic and data dir from PREDLOG_*; flags win."""
        import predlog.sinks.kafka._consumer

        seen = []

        def fake_run(config):
            seen.append(config)
            return _Stats()

        monkeypatch.setattr(predlog.sinks.kafka._consumer, "run", fake_run)
        monkeypatch.setenv("PREDLOG_KAFKA_BOOTSTRAP", "kafka:9092")
        monkeypatch.setenv("PREDLOG_KAFKA_TOPIC", "predictions")
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(tmp_path))
        assert main(["sink"]) == 0
        assert main(["sink", "--bootstrap", "b:1", "--topic", "t", "--data", "d"]) == 0
        assert [(c["bootstrap_servers"], c["topic"], c["data_dir"]) for c in seen] == [
            ("kafka:9092", "predictions", str(tmp_path)),
            ("b:1", "t", "d"),
        ]
        assert capsys.readouterr().out == '{"consumed": 0}\n' * 2

    def test_sink_without_kafka_settings_names_both_variables(self, capsys):
        """Without a bootstrap list or a topic, `predlog sink` says which variables to set."""
        assert main(["sink"]) == 2
        err = capsys.readouterr().err
        assert "PREDLOG_KAFKA_BOOTSTRAP" in err and "PREDLOG_KAFKA_TOPIC" in err


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition, ``None`` if absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


class TestSinkMetrics:
    def test_metrics_port_serves_what_the_consumer_reports(self, monkeypatch, capsys):
        """With --metrics-port, each on_commit the consumer makes shows on /metrics at once,
        and the port is closed when the command returns."""
        import predlog.sinks.kafka._consumer

        port, topic = free_port(), "cli-metrics"
        scraped: list[str] = []

        def fake_run(config):
            totals = ConsumerStats(consumed=10, written=7, duplicates=2, undecodable=1, files=1)
            totals.commits = 1
            config["on_commit"](totals, 42)
            scraped.append(scrape(port))
            totals.consumed, totals.written, totals.files, totals.commits = 15, 12, 2, 2
            config["on_commit"](totals, 0)
            scraped.append(scrape(port))
            return _Stats(consumed=totals.consumed)

        monkeypatch.setattr(predlog.sinks.kafka._consumer, "run", fake_run)
        argv = ["sink", "--bootstrap", "b:1", "--topic", topic, "--group", "g"]
        assert main([*argv, "--metrics-port", str(port)]) == 0
        labels = {"topic": topic, "group": "g"}
        first, second = scraped
        for text, expected in (
            (first, {"consumed": 10, "written": 7, "files": 1, "commits": 1, "lag": 42}),
            (second, {"consumed": 15, "written": 12, "files": 2, "commits": 2, "lag": 0}),
        ):
            assert {
                "consumed": sample(text, "predlog_sink_consumer_records_consumed_total", **labels),
                "written": sample(
                    text, "predlog_sink_consumer_records_total", outcome="written", **labels
                ),
                "files": sample(text, "predlog_sink_consumer_files_published_total", **labels),
                "commits": sample(text, "predlog_sink_consumer_commits_total", **labels),
                "lag": sample(text, "predlog_sink_consumer_lag_records", **labels),
            } == expected
        for outcome, count in (("duplicate", 2), ("undecodable", 1)):
            assert (
                sample(second, "predlog_sink_consumer_records_total", outcome=outcome, **labels)
                == count
            )
        assert sample(second, "predlog_sink_consumer_last_commit_timestamp_seconds", **labels) > 0
        assert capsys.readouterr().out == '{"consumed": 15}\n'
        with pytest.raises(urllib.error.URLError):
            scrape(port)

    def test_without_metrics_port_nothing_listens(self, monkeypatch):
        """Without --metrics-port the consumer gets no on_commit."""
        import predlog.sinks.kafka._consumer

        seen = []
        monkeypatch.setattr(
            predlog.sinks.kafka._consumer, "run", lambda config: seen.append(config) or _Stats()
        )
        assert main(["sink", "--bootstrap", "b:1", "--topic", "t"]) == 0
        assert seen[0]["on_commit"] is None

    @pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
    def test_a_port_that_is_not_one_is_one_line_exit_2(self, port, monkeypatch, capsys):
        """A --metrics-port that is not 1 to 65535 stops the command before it consumes."""
        import predlog.sinks.kafka._consumer

        monkeypatch.setattr(predlog.sinks.kafka._consumer, "run", pytest.fail)
        assert main(["sink", "--bootstrap", "b:1", "--topic", "t", "--metrics-port", port]) == 2
        assert capsys.readouterr().err == (
            f"predlog sink: --metrics-port {port!r}: must be a port number, 1 to 65535\n"
        )

    def test_a_port_in_use_is_one_line_exit_2(self, monkeypatch, capsys):
        """A --metrics-port something else listens on stops the command before it consumes,
        with one line naming the flag."""
        import predlog.sinks.kafka._consumer

        monkeypatch.setattr(predlog.sinks.kafka._consumer, "run", pytest.fail)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            argv = ["sink", "--bootstrap", "b:1", "--topic", "t", "--metrics-port", str(port)]
            assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"predlog sink: --metrics-port {port}: cannot listen on 127.0.0.1 (")
        assert err.count("\n") == 1
