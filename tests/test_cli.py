"""The ``predlog`` command: where its settings come from, and how it reports bad ones."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from services.bentoserve import free_port

import predlog.tools.sink
from predlog.__main__ import main
from predlog._settings import env_var
from predlog.errors import ConfigError
from predlog.tools.sink import ConsumerStats, ParquetDestination, TableDestination
from tests.helpers import ROOT, child_env, predlog_cli


class TestSettings:
    @pytest.mark.parametrize(
        "argv",
        [
            ["investigate", "tx-1"],
            ["evaluate", "--outcomes", "outcomes.csv", "--label", "fraud"],
        ],
    )
    def test_malformed_data_dir_is_one_line_naming_the_variable(
        self, argv, tmp_path, monkeypatch, capsys
    ):
        """A data_dir setting that fails its check ends the command with one line naming
        PREDLOG_DATA_DIR and exit status 1, not a traceback."""
        import predlog.tools.analytics._data

        monkeypatch.chdir(tmp_path)
        (tmp_path / "outcomes.csv").write_text("request_id,fraud\n")

        def reject_data_dir(name, environ=None):
            assert name == "data_dir"
            raise ConfigError(env_var(name), "must be a directory path, got 'x'")

        monkeypatch.setattr(predlog.tools.analytics._data, "read", reject_data_dir)
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
        seen = []

        def fake_run(config):
            seen.append(config)
            return ConsumerStats()

        monkeypatch.setattr(predlog.tools.sink, "consume_until_signalled", fake_run)
        monkeypatch.setenv("PREDLOG_KAFKA_BOOTSTRAP", "kafka:9092")
        monkeypatch.setenv("PREDLOG_KAFKA_TOPIC", "predictions")
        monkeypatch.setenv("PREDLOG_DATA_DIR", str(tmp_path))
        monkeypatch.chdir(tmp_path)
        assert main(["sink", "-o", "json"]) == 0
        assert (
            main(["sink", "--bootstrap", "b:1", "--topic", "t", "--data", "d", "-o", "json"]) == 0
        )
        assert [
            (c["bootstrap_servers"], c["topic"], c["destination"].sink.location.local_path)
            for c in seen
        ] == [
            ("kafka:9092", "predictions", tmp_path),
            ("b:1", "t", Path("d")),
        ]
        assert all(isinstance(c["destination"], ParquetDestination) for c in seen)
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [said["consumed"] for said in printed] == [0, 0]

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
            return totals

        monkeypatch.setattr(predlog.tools.sink, "consume_until_signalled", fake_run)
        argv = ["sink", "--bootstrap", "b:1", "--topic", topic, "--group", "g"]
        assert main([*argv, "--metrics-port", str(port), "-o", "json"]) == 0
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
        assert json.loads(capsys.readouterr().out)["consumed"] == 15
        with pytest.raises(urllib.error.URLError):
            scrape(port)

    def test_table_runs_the_same_consumer_and_serves_its_metrics(self, monkeypatch, tmp_path):
        """`predlog sink --table` runs the one consumer loop into a table destination, and
        --metrics-port serves what it reports, as for the Parquet layout."""
        port, seen, scraped = free_port(), [], []

        def fake_run(config):
            seen.append(config)
            totals = ConsumerStats(consumed=9, written=9, files=3, commits=1)
            config["on_commit"](totals, 4)
            scraped.append(scrape(port))
            return totals

        monkeypatch.setattr(predlog.tools.sink, "consume_until_signalled", fake_run)
        argv = ["sink", "--bootstrap", "b:1", "--topic", "tbl", "--group", "g", "-o", "json"]
        argv += ["--table", "stream.preds", "--data", str(tmp_path), "--metrics-port", str(port)]
        assert main(argv) == 0
        assert isinstance(seen[0]["destination"], TableDestination)
        labels = {"topic": "tbl", "group": "g"}
        assert [
            sample(scraped[0], f"predlog_sink_consumer_{name}", **labels)
            for name in ("records_consumed_total", "files_published_total", "lag_records")
        ] == [9, 3, 4]

    def test_without_metrics_port_nothing_listens(self, monkeypatch, tmp_path):
        """Without --metrics-port the consumer gets no on_commit."""
        seen = []
        monkeypatch.setattr(
            predlog.tools.sink,
            "consume_until_signalled",
            lambda config: seen.append(config) or ConsumerStats(),
        )
        monkeypatch.chdir(tmp_path)
        assert main(["sink", "--bootstrap", "b:1", "--topic", "t"]) == 0
        assert seen[0]["on_commit"] is None

    @pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
    def test_a_port_that_is_not_one_is_one_line_exit_2(self, port, monkeypatch, capsys):
        """A --metrics-port that is not 1 to 65535 stops the command before it consumes."""
        monkeypatch.setattr(predlog.tools.sink, "consume_until_signalled", pytest.fail)
        assert main(["sink", "--bootstrap", "b:1", "--topic", "t", "--metrics-port", port]) == 2
        assert capsys.readouterr().err == (
            f"predlog sink: --metrics-port {port!r}: must be a port number, 1 to 65535\n"
        )

    def test_a_port_in_use_is_one_line_exit_2(self, monkeypatch, capsys):
        """A --metrics-port something else listens on stops the command before it consumes,
        with one line naming the flag."""
        monkeypatch.setattr(predlog.tools.sink, "consume_until_signalled", pytest.fail)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            argv = ["sink", "--bootstrap", "b:1", "--topic", "t", "--metrics-port", str(port)]
            assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"predlog sink: --metrics-port {port}: cannot listen on 127.0.0.1 (")
        assert err.count("\n") == 1


# -- The command line as a user meets it -------------------------------------------------

KEY_SEED = bytes(range(32))


def half(features: dict[str, object]) -> float:
    """A scorer for ``predlog replay --model tests.test_cli:half``."""
    return 0.5


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """200 logged predictions, their outcomes, and an audit log of a few of them."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    import predlog
    from predlog.audit import AuditLog

    root = tmp_path_factory.mktemp("cli")
    with predlog.PredictionLogger(
        model_name="m",
        model_version="v1",
        data_dir=str(root / "data"),
        new_version_window_s=0,
        install_signal_handlers=False,
    ) as log:
        for i in range(200):
            score = ((i * 37) % 100) / 100 + 0.001234567
            log.log(
                request_id=f"r-{i}",
                features={"amount": i * 1.2345678, "kind": "ab"[i % 2]},
                score=score,
                decision="declined" if score >= 0.5 else "approved",
                threshold=0.5,
                user_segment="s",
                channel="web",
                geographic_region="eu",
            )
    lines = ["request_id,fraud"] + [
        f"r-{i},{'true' if i % 3 == 0 else 'false'}" for i in range(200)
    ]
    (root / "outcomes.csv").write_text("\n".join(lines) + "\n")
    key = ed25519.Ed25519PrivateKey.from_private_bytes(KEY_SEED)
    with AuditLog(root / "audit", signing_key=key, checkpoint_every=0) as audit:
        audit.append_many([{"request_id": f"r-{i}", "decision": "declined"} for i in range(3)])
        audit.checkpoint()
    return root


WIDE = "2000-01-01..2100-01-01"


def commands(root) -> dict[str, list[str]]:
    """One working invocation of each command against ``logs``."""
    data, audit = str(root / "data"), str(root / "audit")
    key = (root / "audit" / "public_key.hex").read_text().strip()
    outcomes = str(root / "outcomes.csv")
    return {
        "investigate": ["investigate", "r-1", "--data", data],
        "evaluate": ["evaluate", "--outcomes", outcomes, "--label", "fraud", "--data", data],
        "drift": ["drift", "--baseline", WIDE, "--current", WIDE, "--data", data],
        "replay": ["replay", "r-1", "--model", "tests.test_cli:half", "--data", data],
        "audit verify": ["audit", "verify", audit, "--public-key", key],
        "audit show": ["audit", "show", "r-1", "--audit-dir", audit, "--public-key", key],
        "audit prove": ["audit", "prove", "r-1", "--audit-dir", audit, "--public-key", key],
    }


def swap(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value (or the positional after the command) replaced."""
    out = list(argv)
    out[out.index(option) + 1] = value
    return out


def broken(root) -> list[tuple[str, list[str], str]]:
    """(case, argv, what the one-line error must name) for each command."""
    c, nowhere = commands(root), str(root / "nowhere")
    cases = []
    for name in ("investigate", "evaluate", "drift", "replay"):
        cases.append((f"{name} missing data", swap(c[name], "--data", nowhere), nowhere))
    for name in ("investigate", "replay"):
        cases.append((f"{name} unknown id", swap(c[name], name, "no-such-id"), "no-such-id"))
    cases += [
        ("evaluate missing outcomes", swap(c["evaluate"], "--outcomes", nowhere), nowhere),
        ("evaluate bad since", [*c["evaluate"], "--since", "2026-13-45"], "2026-13-45"),
        ("evaluate bad until", [*c["evaluate"], "--until", "2026-02-30"], "2026-02-30"),
        ("drift bad date", swap(c["drift"], "--baseline", "2026-13-45..2026-14-01"), "2026-13-45"),
        ("drift not a range", swap(c["drift"], "--current", "2026-10-01"), "2026-10-01"),
        ("replay bad model", swap(c["replay"], "--model", "no_such_module:f"), "no_such_module"),
        ("investigate missing audit", [*c["investigate"], "--audit-dir", nowhere], nowhere),
        ("audit verify missing", swap(c["audit verify"], "verify", nowhere), nowhere),
        ("audit show missing", swap(c["audit show"], "--audit-dir", nowhere), nowhere),
        ("audit prove missing", swap(c["audit prove"], "--audit-dir", nowhere), nowhere),
        ("audit show unknown id", swap(c["audit show"], "show", "no-such-id"), "no-such-id"),
        ("audit prove unknown id", swap(c["audit prove"], "prove", "no-such-id"), "no-such-id"),
        ("audit kept missing", [*c["audit verify"], "--kept-checkpoint", nowhere], nowhere),
        (
            "sink bad port",
            ["sink", "--bootstrap", "b:1", "--topic", "t", "--metrics-port", "x"],
            "x",
        ),
        ("sink no kafka", ["sink", "--data", nowhere], "PREDLOG_KAFKA_BOOTSTRAP"),
    ]
    return cases


class TestUserFacing:
    def test_every_command_works_and_prints_json_with_o_json(self, logs):
        """Each command's working invocation exits 0 in text, and -o json is JSON."""
        for name, argv in commands(logs).items():
            text = predlog_cli(*argv)
            assert text.returncode == 0, (name, text.stderr)
            assert text.stdout.strip() and not text.stdout.lstrip().startswith(("{", "[")), name
            as_json = predlog_cli(*argv, "-o", "json")
            assert as_json.returncode == 0, (name, as_json.stderr)
            json.loads(as_json.stdout)

    def test_errors_are_one_line_naming_the_culprit(self, logs):
        """A missing path, a bad date, an unknown request id: non-zero exit, one line on
        stderr naming it, no traceback, for every command."""
        failures = []
        for case, argv, named in broken(logs):
            proc = predlog_cli(*argv)
            lines = proc.stderr.strip().splitlines()
            ok = proc.returncode != 0 and len(lines) == 1 and named in lines[0]
            if not ok or "Traceback" in proc.stderr:
                failures.append((case, proc.returncode, proc.stderr))
        assert failures == []

    def test_floats_print_with_four_significant_digits(self, logs):
        """Precision, recall, AUC, scores and feature values are not printed with 16 digits."""
        c = commands(logs)
        out = predlog_cli(*c["evaluate"]).stdout + predlog_cli(*c["investigate"]).stdout
        assert re.search(r"precision \S+", out)
        long = [
            n
            for n in re.findall(r"(?<![\d:])\d+\.\d+(?:e[-+]\d+)?", out)
            # significant digits: the zeros that lead 0.04623 are not among them
            if len(n.replace(".", "").lstrip("0")) > 4
        ]
        assert long == [], out

    def test_console_script_replays_a_model_from_the_working_directory(self, logs):
        """The installed `predlog` script, run from the repository without PYTHONPATH,
        imports `--model tests.test_cli:half` from there, as `python -m` would."""
        script = Path(sys.executable).parent / "predlog"
        if not script.exists():
            pytest.skip("no predlog console script installed beside this interpreter")
        env = child_env()
        env.pop("PYTHONPATH")
        proc = subprocess.run(
            [str(script), *commands(logs)["replay"]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "replayed tests.test_cli:half" in proc.stdout

    def test_closed_pipe_is_quiet(self, logs):
        """`predlog investigate ... | head -1`: the reader leaves first; no BrokenPipeError."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "predlog", *commands(logs)["investigate"]],
            env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}:{ROOT}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the command has printed anything
        err = proc.stderr.read()
        proc.wait(timeout=60)
        assert "Traceback" not in err and "BrokenPipe" not in err, err
        assert err == ""

    def test_version_imports_nothing_heavy(self):
        """`predlog --version` loads neither pyarrow nor bentoml, duckdb or pandas."""
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "predlog", "--version"],
            env=child_env(PYTHONPATH=str(ROOT / "plugin")),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert re.fullmatch(r"predlog \d+\.\d+\.\d+\S*\n", proc.stdout)
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
        assert {"click", "predlog.tools.cli"} <= imported
        heavy = {
            m
            for m in imported
            if m.split(".")[0] in {"pyarrow", "bentoml", "duckdb", "pandas", "numpy"}
        }
        assert heavy == set()

    def test_shell_completion(self):
        """click's completion answers for `predlog`: commands, then a command's options."""

        def complete(words: str) -> str:
            env = child_env(
                PYTHONPATH=str(ROOT / "plugin"),
                _PREDLOG_COMPLETE="bash_complete",
                COMP_WORDS=words,
                COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            )
            proc = subprocess.run(
                [sys.executable, "-m", "predlog"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            return proc.stdout

        assert "plain,investigate" in complete("predlog inv")
        assert "plain,--audit-dir" in complete("predlog audit show --au")


def _options(command, path=()):
    """Every (command path, option) in the command tree."""
    import click

    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            sub = command.get_command(click.Context(command), name)
            yield from _options(sub, (*path, name))
        return
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            yield " ".join(path), param


class TestHelp:
    def test_every_option_has_help_and_settings_show_their_variable(self):
        """Every visible option says what it is; those backed by a setting name its
        PREDLOG_* variable and its declared default."""
        import click

        from predlog.tools.cli import cli
        from predlog.tools.cli._options import SettingOption

        found = list(_options(cli))
        assert {path for path, _ in found} >= {"sink", "investigate", "audit verify", "replay"}
        assert [(p, o.name) for p, o in found if not o.help and o.name != "help"] == []
        for path, option in found:
            if isinstance(option, SettingOption):
                record = option.get_help_record(click.Context(click.Command(path)))
                assert record is not None and f"env var: {option.envvar}" in record[1]
        data = [o for _, o in found if o.name == "data"]
        assert data and {o.help for o in data} == {data[0].help}
        record = data[0].get_help_record(click.Context(click.Command("x")))
        assert "PREDLOG_DATA_DIR" in record[1] and "default: ./predlog-data" in record[1]

    @pytest.mark.parametrize("argv", [[], ["audit"]])
    def test_a_group_without_a_command_prints_its_help(self, argv, capsys):
        """`predlog` and `predlog audit` alone print their help and exit 0."""
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"Usage: predlog {' '.join(argv)}".rstrip() + " [OPTIONS]")
        assert err == ""

    def test_one_meaning_per_option_name(self):
        """--data is the prediction data everywhere; the audit directory is --audit-dir."""
        from predlog.tools.cli import cli

        by_name: dict[str, set[str]] = {}
        for _, option in _options(cli):
            by_name.setdefault(option.opts[-1], set()).add(option.help or "")
        for name in ("--data", "--output", "--public-key"):
            assert len(by_name[name]) == 1, (name, by_name[name])
        assert all(h.startswith("The audit log directory") for h in by_name["--audit-dir"])
        assert "prediction data" in next(iter(by_name["--data"])).lower()


class TestBench:
    def test_bench_unavailable_says_why_and_others_still_work(self, monkeypatch, capsys):
        """When `predlog.tools.bench` cannot be imported, `predlog bench` says so in one line,
        and the help and the other commands are unaffected."""
        import predlog.tools.cli

        monkeypatch.setitem(
            predlog.tools.cli.LAZY_COMMANDS, "bench", "predlog_no_such_module:command"
        )
        monkeypatch.setattr(predlog.tools.cli.cli, "commands", dict(predlog.tools.cli.cli.commands))
        predlog.tools.cli.cli.commands.pop("bench", None)
        assert main(["bench", "svc:app"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("predlog bench: this command is unavailable: ModuleNotFoundError")
        assert err.count("\n") == 1
        assert main(["--help"]) == 0
        assert "investigate" in capsys.readouterr().out
        assert main(["sink"]) == 2  # runs as before: no Kafka settings

    def test_bench_is_imported_only_when_used(self, monkeypatch, tmp_path, capsys):
        """A bench command that can be imported runs; it is not imported for other commands."""
        import click

        import predlog.tools.cli

        (tmp_path / "fake_bench.py").write_text(
            "import click\n\n@click.command('bench')\n@click.argument('service')\n"
            "def command(service):\n    click.echo(f'benched {service}')\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setitem(predlog.tools.cli.LAZY_COMMANDS, "bench", "fake_bench:command")
        monkeypatch.setattr(predlog.tools.cli.cli, "commands", dict(predlog.tools.cli.cli.commands))
        predlog.tools.cli.cli.commands.pop("bench", None)
        assert main(["sink"]) == 2
        assert "fake_bench" not in sys.modules
        assert main(["bench", "svc:app"]) == 0
        assert capsys.readouterr().out == "benched svc:app\n"
        assert isinstance(predlog.tools.cli.cli.commands["bench"], click.Command)
        sys.modules.pop("fake_bench", None)
