"""The ``predlog`` command: where its settings come from, and how it reports bad ones."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from predlog.__main__ import main
from predlog._settings import env_var
from predlog.errors import ConfigError


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
