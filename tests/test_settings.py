from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from starlette.applications import Starlette

import predlog
from predlog._settings import (
    DEFAULT_DATA_DIR,
    LoggerOptions,
    MiddlewareOptions,
    MiddlewareSettings,
    Settings,
    ToolSettings,
    env_var,
    read,
    resolve,
    setting_names,
)
from predlog.errors import ConfigError
from predlog.testing import MemorySink


class TestResolve:
    def test_defaults_without_configuration(self):
        """With nothing set, the embedded defaults apply."""
        s = resolve({}, environ={})
        assert s.data_dir == "./predlog-data"
        assert s.sample_rate == 1.0
        assert s.high_risk_score == 0.9
        assert s.new_version_window_s == 24 * 3600
        assert s.overflow == "drop_newest"

    def test_environment_overrides_defaults(self):
        """PREDLOG_* variables replace defaults and are parsed to the right type."""
        s = resolve(
            {},
            environ={
                "PREDLOG_SAMPLE_RATE": "0.25",
                "PREDLOG_DATA_DIR": "/srv/logs",
                "PREDLOG_RING_CAPACITY": "1024",
                "PREDLOG_SUMMARY_FEATURES": "amount, hour,,channel",
                "PREDLOG_INSTALL_SIGNAL_HANDLERS": "false",
            },
        )
        assert s.sample_rate == 0.25
        assert s.data_dir == "/srv/logs"
        assert s.ring_capacity == 1024
        assert s.summary_features == ("amount", "hour", "channel")
        assert s.install_signal_handlers is False
        assert s.sources["sample_rate"] == "PREDLOG_SAMPLE_RATE"

    def test_keyword_arguments_override_environment(self):
        """A keyword argument wins over the environment."""
        s = resolve({"sample_rate": 0.5}, environ={"PREDLOG_SAMPLE_RATE": "0.1"})
        assert s.sample_rate == 0.5
        assert s.sources["sample_rate"] == "argument"

    def test_legacy_sample_rate_alias(self):
        """PREDICTION_LOG_SAMPLE_RATE is honoured, but PREDLOG_SAMPLE_RATE wins."""
        assert resolve({}, environ={"PREDICTION_LOG_SAMPLE_RATE": "0.3"}).sample_rate == 0.3
        both = {"PREDICTION_LOG_SAMPLE_RATE": "0.3", "PREDLOG_SAMPLE_RATE": "0.7"}
        assert resolve({}, environ=both).sample_rate == 0.7

    @pytest.mark.parametrize(
        ("environ", "setting"),
        [
            ({"PREDLOG_SAMPLE_RATE": "lots"}, "PREDLOG_SAMPLE_RATE"),
            ({"PREDLOG_SAMPLE_RATE": "1.5"}, "PREDLOG_SAMPLE_RATE"),
            ({"PREDICTION_LOG_SAMPLE_RATE": "-1"}, "PREDICTION_LOG_SAMPLE_RATE"),
            ({"PREDLOG_RING_CAPACITY": "0"}, "PREDLOG_RING_CAPACITY"),
            ({"PREDLOG_RING_CAPACITY": "4k"}, "PREDLOG_RING_CAPACITY"),
            ({"PREDLOG_OVERFLOW": "block"}, "PREDLOG_OVERFLOW"),
            ({"PREDLOG_FLUSH_INTERVAL_S": "0"}, "PREDLOG_FLUSH_INTERVAL_S"),
            ({"PREDLOG_INSTALL_SIGNAL_HANDLERS": "maybe"}, "PREDLOG_INSTALL_SIGNAL_HANDLERS"),
        ],
    )
    def test_malformed_environment_names_the_variable(self, environ, setting):
        """A bad environment value fails with a message starting with the variable name."""
        with pytest.raises(ConfigError) as info:
            resolve({}, environ=environ)
        assert str(info.value).startswith(f"{setting}: ")
        assert info.value.setting == setting

    @pytest.mark.parametrize(
        ("kwargs", "setting"),
        [
            ({"sample_rate": 2}, "sample_rate"),
            ({"sample_rate": float("nan")}, "sample_rate"),
            ({"sample_rate": "0.5"}, "sample_rate"),
            ({"high_risk_score": True}, "high_risk_score"),
            ({"ring_capacity": 10.5}, "ring_capacity"),
            ({"batch_size": -1}, "batch_size"),
            ({"model_name": ""}, "model_name"),
            ({"summary_features": "amount"}, "summary_features"),
            ({"new_version_window_s": float("inf")}, "new_version_window_s"),
            ({"sampel_rate": 0.5}, "sampel_rate"),
        ],
    )
    def test_malformed_argument_names_the_argument(self, kwargs, setting):
        """A bad keyword argument (or a misspelt one) fails naming that argument."""
        with pytest.raises(ConfigError) as info:
            resolve(kwargs, environ={})
        assert str(info.value).startswith(f"{setting}: ")

    @pytest.mark.parametrize(
        ("name", "variable"),
        [("model_framework", "PREDLOG_MODEL_FRAMEWORK"), ("model_name", "PREDLOG_MODEL_NAME")],
    )
    def test_text_that_is_not_utf8_is_refused(self, name, variable):
        """An environment variable holding bytes that are not UTF-8 arrives with lone
        surrogates; every record would carry it and fail to be stored. Refused at start-up,
        named, as an argument and as a variable."""
        with pytest.raises(ConfigError, match=rf"^{name}: must be valid UTF-8 text"):
            resolve({name: "sk\udcfflearn"}, environ={})
        with pytest.raises(ConfigError, match=rf"^{variable}: must be valid UTF-8 text"):
            resolve({}, environ={variable: "sk\udcfflearn"})

    def test_batch_size_is_capped_by_ring_capacity(self):
        """A batch can never be larger than the ring that feeds it."""
        s = resolve({"ring_capacity": 128, "batch_size": 4096}, environ={})
        assert s.batch_size == 128


class TestLoggerStartup:
    def test_bad_config_fails_at_construction(self, monkeypatch):
        """PredictionLogger refuses to start on a malformed environment, naming it."""
        monkeypatch.setenv("PREDLOG_SAMPLE_RATE", "half")
        with pytest.raises(ConfigError, match=r"^PREDLOG_SAMPLE_RATE: "):
            predlog.PredictionLogger(sinks=[MemorySink()], install_signal_handlers=False)

    def test_environment_reaches_the_logger(self, monkeypatch):
        """Settings from the environment are the ones the logger runs with."""
        monkeypatch.setenv("PREDLOG_MODEL_NAME", "credit")
        monkeypatch.setenv("PREDLOG_MODEL_VERSION", "v9")
        sink = MemorySink()
        with predlog.PredictionLogger(sinks=[sink], install_signal_handlers=False) as log:
            log.log(request_id="r", score=0.2)
        assert sink.records[0]["model_name"] == "credit"
        assert sink.records[0]["model_version"] == "v9"


class TestDeclaredOnce:
    @pytest.mark.parametrize(
        ("options", "settings"),
        [(LoggerOptions, Settings), (MiddlewareOptions, MiddlewareSettings)],
    )
    def test_typed_keywords_mirror_the_declarations(self, options, settings):
        """The keyword arguments type checkers see are exactly the declared settings."""
        declared = {f.name for f in dataclasses.fields(settings)} - {"sources"}
        assert set(options.__annotations__) == declared

    def test_every_setting_reads_its_own_variable(self):
        """Each declared setting is read from PREDLOG_<NAME>, with no hand-kept list."""
        for cls in (Settings, MiddlewareSettings, ToolSettings):
            for name in setting_names(cls):
                assert env_var(name) == f"PREDLOG_{name.upper()}"
        s = resolve({}, environ={"PREDLOG_KAFKA_COMPRESSION": "lz4"})
        assert (s.kafka_compression, s.sources["kafka_compression"]) == (
            "lz4",
            "PREDLOG_KAFKA_COMPRESSION",
        )

    def test_the_middleware_takes_each_logger_setting(self):
        """A logger setting given to the middleware reaches the logger it makes."""
        middleware = predlog.PredictionLogMiddleware(
            Starlette(),
            sinks=[MemorySink()],
            install_signal_handlers=False,
            model_version="v7",
            score_field="out.p",
        )
        middleware.logger.close()
        assert middleware.logger.settings.model_version == "v7"
        assert middleware.settings.score_field == "out.p"

    def test_read_checks_one_setting_alone(self):
        """read() gives one setting from the environment or its default, checked, and is
        not upset by an unrelated malformed variable."""
        environ = {"PREDLOG_SAMPLE_RATE": "lots"}
        assert read("data_dir", environ) == DEFAULT_DATA_DIR
        assert read("data_dir", {"PREDLOG_DATA_DIR": "/srv/p"}) == "/srv/p"
        assert read("jaeger_url", {}) is None
        with pytest.raises(ConfigError, match=r"^PREDLOG_SAMPLE_RATE: "):
            read("sample_rate", environ)

    def test_the_audit_signing_key_takes_three_forms_and_refuses_the_rest(self, tmp_path):
        """PREDLOG_AUDIT_SIGNING_KEY is a readable file's path, PEM text or 64 hex
        characters; anything else fails naming the variable, never repeating the value
        (it may be the key), and the value stays out of the settings' repr."""
        key_file = tmp_path / "key.pem"
        key_file.write_text("-----BEGIN PRIVATE KEY-----\n...\n")
        for good in (str(key_file), key_file.read_text(), "ab" * 32, "AB" * 32):
            assert read("audit_signing_key", {"PREDLOG_AUDIT_SIGNING_KEY": good}) == good
        assert read("audit_signing_key", {}) is None
        for bad in ("c2VjcmV0LWtleS1ieXRlcw==", "ab" * 31, str(tmp_path / "missing.pem")):
            with pytest.raises(ConfigError) as info:
                read("audit_signing_key", {"PREDLOG_AUDIT_SIGNING_KEY": bad})
            assert str(info.value).startswith("PREDLOG_AUDIT_SIGNING_KEY: ")
            assert bad not in str(info.value)
        assert "ab" * 32 not in repr(ToolSettings(audit_signing_key="ab" * 32))

    def test_a_path_object_is_a_data_dir(self, tmp_path):
        """data_dir accepts a pathlib.Path as well as a string."""
        assert resolve({"data_dir": tmp_path}, environ={}).data_dir == str(tmp_path)

    def test_readme_documents_every_setting(self):
        """The README's configuration section names each declared setting and variable."""
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        section = readme[readme.index("## Configuration") : readme.index("## Layout")]
        for cls in (Settings, MiddlewareSettings, ToolSettings):
            for name in setting_names(cls):
                assert f"`{name}`" in section, name
                assert env_var(name) in section, name


class TestLocations:
    """A file:// URL means what RFC 8089 says, or is refused; never a relative folder."""

    @pytest.mark.parametrize(
        ("url", "path"),
        [
            ("file:///var/data", "/var/data"),
            ("file://localhost/var/data", "/var/data"),
            ("file:///var/my%20data", "/var/my data"),
            ("./relative/dir", "relative/dir"),
        ],
    )
    def test_local_file_urls(self, url, path):
        assert resolve({"data_dir": url}).data_path == Path(path)

    @pytest.mark.parametrize("url", ["file://otherhost/var/data", "file://data/x", "file://"])
    def test_a_file_url_that_is_not_local_and_absolute_is_refused(self, url):
        with pytest.raises(ConfigError, match=r"^data_dir: .*file://"):
            resolve({"data_dir": url})

    def test_a_table_and_a_kafka_sink_together_are_refused(self):
        with pytest.raises(ConfigError, match=r"^iceberg_table: .*predlog sink --table"):
            resolve({"iceberg_table": "ns.t", "kafka_bootstrap": "b:9092", "kafka_topic": "t"})
