"""Progress of long commands: stage lines and a bar on a terminal, silence elsewhere."""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import click
import pandas as pd
import pytest
from rich.console import Console

import predlog
from predlog.tools.cli import output_option
from predlog.tools.cli._options import progress
from predlog.tools.cli._progress import Reporter, terminal_reporter
from tests.helpers import ROOT, child_env

#: What only the live bar draws: rich's elapsed-time column (H:MM:SS).
BAR_CLOCK = re.compile(r"\d:\d\d:\d\d")
#: What a finished stage leaves: ``<stage>: 0.3s``.
STAGE_LINE = re.compile(r"\S: \d+\.\ds\b")
#: A whole line that is a finished stage.
STAGE_ONLY = re.compile(r".*\S: (\d+\.\d|\d+m\d\d)s")
RANGES = ("--baseline", "2026-10-01..2026-10-08", "--current", "2026-10-08..2026-10-15")


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recording_console() -> Console:
    """A console that believes it is a terminal and keeps what it drew."""
    return Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)


def drawn(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|([\r\n])")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: text, CR, LF, erase line, cursor up."""
    lines, row, col, at = [""], 0, 0, 0

    def put(text: str) -> None:
        nonlocal col
        line = lines[row].ljust(col)
        lines[row] = line[:col] + text + line[col + len(text) :]
        col += len(text)

    for match in CONTROL.finditer(raw):
        put(raw[at : match.start()])
        at = match.end()
        argument, command, char = match.groups()
        if char == "\r":
            col = 0
        elif char == "\n":
            row, col = row + 1, 0
            lines.extend([""] * (row + 1 - len(lines)))
        elif command == "K":
            lines[row] = ""
        elif command == "A":
            row = max(0, row - int(argument or 1))
    put(raw[at:])
    return [line.rstrip() for line in lines if line.strip()]


class TestReporter:
    def test_stage_lines_with_elapsed_time_and_a_counting_bar(self):
        """Each finished stage leaves one line with its duration; the bar counts steps."""
        console, clock = recording_console(), FakeClock()
        reporter = terminal_reporter(sys.stderr, console=console, clock=clock)
        reporter("reading predictions")
        clock.now += 1.25
        for done in range(4):
            reporter("features", done, 3)
            clock.now += 0.5
        reporter.close()
        out = drawn(console)
        assert "reading predictions: 1.2s" in out or "reading predictions: 1.3s" in out
        assert "features 3/3: 2.0s" in out
        assert "features 0/3" not in out  # counts are the bar's, not lines
        assert "2/3" in out  # the bar drew a count on its way
        assert "━" in out  # and a bar
        # The bar is transient: what stays on the screen is the stage lines alone.
        assert screen(out)[-1] == "features 3/3: 2.0s"
        assert len(screen(out)) == 2

    def test_one_argument_messages_are_stages(self):
        """``progress(message)``, as callers with no counts make, works alone."""
        console, clock = recording_console(), FakeClock()
        with terminal_reporter(sys.stderr, console=console, clock=clock) as reporter:
            reporter("feature 1/2: amount")
            clock.now += 3
            reporter("feature 2/2: channel")
        assert screen(drawn(console)) == [
            "feature 1/2: amount: 3.0s",
            "feature 2/2: channel: 0.0s",
        ]

    def test_close_is_idempotent_and_calls_after_it_are_ignored(self):
        console = recording_console()
        reporter = terminal_reporter(sys.stderr, console=console)
        reporter("a")
        reporter.close()
        reporter.close()
        before = drawn(console)
        reporter("b", 1, 2)
        assert drawn(console) == before

    def test_a_failing_terminal_never_fails_the_caller(self):
        """A stream that breaks (a closed terminal) silences the reporter, nothing more."""

        class Broken(io.StringIO):
            def write(self, text: str) -> int:
                raise OSError("terminal gone")

        console = Console(file=Broken(), force_terminal=True, width=80)
        reporter = terminal_reporter(sys.stderr, console=console)
        reporter("joining")
        reporter("features", 1, 9)
        reporter.close()

    def test_plain_lines_without_rich(self, monkeypatch):
        """Without rich, a plain line per stage, rewritten in place while it counts."""
        monkeypatch.setitem(sys.modules, "rich.console", None)
        stream, clock = io.StringIO(), FakeClock()
        reporter = terminal_reporter(stream, clock=clock)
        reporter("joining")
        clock.now += 2
        reporter("features", 1, 2)
        reporter("features", 2, 2)
        clock.now += 61
        reporter.close()
        screen = stream.getvalue().split("\r\x1b[K")
        assert "joining: 2.0s\n" in screen
        assert "features 1/2 ..." in screen
        assert "features 2/2: 1m01s\n" in screen


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestWhenToReport:
    def test_a_terminal_reading_text_gets_a_reporter(self, monkeypatch):
        monkeypatch.setattr(sys, "stderr", FakeTerminal())
        reporter = progress({"output": "text", "as_json": False})
        assert isinstance(reporter, Reporter)
        reporter.close()

    @pytest.mark.parametrize(
        "options", [{"output": "json", "as_json": False}, {"output": "text", "as_json": True}]
    )
    def test_json_output_is_quiet(self, monkeypatch, options):
        monkeypatch.setattr(sys, "stderr", FakeTerminal())
        assert progress(options) is None

    def test_a_pipe_is_quiet(self, monkeypatch):
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        assert progress({"output": "text", "as_json": False}) is None

    @pytest.mark.parametrize(("args", "reports"), [([], True), (["-o", "json"], False)])
    def test_a_command_s_own_options_decide_and_its_end_closes(self, monkeypatch, args, reports):
        """Without options, the running command's ``-o`` decides; when the command ends,
        its last stage line is written even if the command never closed the reporter."""
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        made = []

        @click.command()
        @output_option
        def command(**o: object) -> None:
            say = progress()
            made.append(say)
            if say is not None:
                say("crunching")

        command.main(args, standalone_mode=False)
        assert (made[0] is not None) == reports
        lines = screen(terminal.getvalue())
        assert len(lines) == (1 if reports else 0), lines
        assert all(line.startswith("crunching: ") and STAGE_ONLY.fullmatch(line) for line in lines)

    def test_a_reporter_that_cannot_start_is_no_reporter(self, monkeypatch):
        def broken(stream: object) -> Reporter:
            raise RuntimeError("no console")

        monkeypatch.setattr(sys, "stderr", FakeTerminal())
        monkeypatch.setattr("predlog.tools.cli._options.terminal_reporter", broken)
        assert progress({"output": "text"}) is None


# ---- the commands, as a person and a program run them -------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two weeks of small logs, with outcomes for evaluate."""
    root = tmp_path_factory.mktemp("progress")
    with predlog.PredictionLogger(
        model_name="fraud",
        model_version="v1",
        data_dir=str(root / "data"),
        install_signal_handlers=False,
    ) as log:
        for week in (0, 1):
            start = datetime(2026, 10, 1, tzinfo=timezone.utc) + timedelta(days=7 * week)
            for i in range(300):
                score = ((i * 37) % 100) / 100
                log.log(
                    request_id=f"w{week}-{i}",
                    features={"amount": float(i % 50) * (1 + week), "channel": f"c{i % 3}"},
                    score=score,
                    decision="decline" if score > 0.5 else "approve",
                    threshold=0.5,
                    user_segment=f"s{i % 2}",
                    channel=f"c{i % 3}",
                    geographic_region="eu",
                    timestamp=start + timedelta(seconds=i * 600),
                )
    outcomes = root / "outcomes.csv"
    pd.DataFrame(
        {
            "request_id": [f"w{w}-{i}" for w in (0, 1) for i in range(300)],
            "fraud": [int(((i * 37) % 100) / 100 > 0.4) for _ in (0, 1) for i in range(300)],
        }
    ).to_csv(outcomes, index=False)
    return root


def cli_env() -> dict[str, str]:
    # A UTF-8 locale and a width, as a terminal has; the examples are not needed.
    return child_env(
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
        COLUMNS="100",
        LINES="40",
        LANG="C.UTF-8",
        TERM="xterm",
    )


def on_terminal(*args: str, stdout_too: bool = False) -> tuple[int, str, str]:
    """Run ``predlog ARGS`` with stderr on a pseudo-terminal and stdout on a pipe (or on
    the same terminal: ``stdout_too``).

    Returns the exit status, stdout, and everything drawn on the terminal.
    """
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "predlog", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower if stdout_too else subprocess.PIPE,
        stderr=follower,
        env=cli_env(),
    )
    os.close(follower)
    screen, out = bytearray(), bytearray()
    streams = {leader: screen}
    if proc.stdout is not None:
        streams[proc.stdout.fileno()] = out
    deadline = time.monotonic() + 240
    while streams and time.monotonic() < deadline:
        ready, _, _ = select.select(list(streams), [], [], 1)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's last writer is gone (EIO)
                chunk = b""
            if chunk:
                streams[fd] += chunk
            else:
                del streams[fd]
    os.close(leader)
    if proc.stdout is not None:
        proc.stdout.close()
    status = proc.wait(timeout=30)
    return status, out.decode(), screen.decode(errors="replace")


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "predlog", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def assert_no_progress(stderr: str) -> None:
    assert not BAR_CLOCK.search(stderr), stderr
    assert not STAGE_LINE.search(stderr), stderr
    assert "\r" not in stderr.replace("\r\n", "\n"), stderr  # no line drawn over
    assert "%" not in stderr, stderr  # nor DuckDB's own bar


class TestCommands:
    def test_compact_on_a_terminal_draws_its_stage(self, logs, tmp_path):
        import shutil

        data = tmp_path / "data"
        shutil.copytree(logs / "data", data)
        status, out, screen = on_terminal("compact", "--data", str(data))
        assert status == 0, screen
        assert re.search(r"compacting days.*: \d+\.\ds", screen), screen
        assert "total:" in out
        assert "\x1b" not in out

    def test_drift_on_a_terminal_draws_stages_and_a_bar(self, logs):
        status, out, screen = on_terminal("drift", *RANGES, "--data", str(logs / "data"))
        assert status == 0, screen
        assert STAGE_LINE.search(screen), screen
        assert BAR_CLOCK.search(screen), screen
        # The answer on stdout is the report alone: no bar, no stage line in it.
        assert "amount" in out
        assert not BAR_CLOCK.search(out)
        assert not STAGE_LINE.search(out)
        assert "\x1b" not in out

    def test_evaluate_on_a_terminal_draws_stages_and_a_bar(self, logs):
        status, out, screen = on_terminal(
            "evaluate",
            "--data",
            str(logs / "data"),
            "--outcomes",
            str(logs / "outcomes.csv"),
            "--label",
            "fraud",
            "--min-cohort",
            "10",
        )
        assert status == 0, screen
        assert STAGE_LINE.search(screen), screen
        assert BAR_CLOCK.search(screen), screen
        assert "\x1b" not in out

    def test_the_bar_is_gone_before_the_answer_is_printed(self, logs):
        """On one terminal for both streams, the stage lines come first, then the answer
        exactly as a pipe receives it: the bar neither overwrites nor erases a line of it."""
        args = ("drift", *RANGES, "--data", str(logs / "data"))
        status, _, shown = on_terminal(*args, stdout_too=True)
        assert status == 0, shown
        lines = screen(shown)
        stages = [n for n, line in enumerate(lines) if STAGE_ONLY.fullmatch(line)]
        assert stages, lines
        assert stages == list(range(len(stages))), lines
        answer = piped(*args).stdout
        assert lines[len(stages) :] == [
            line.rstrip() for line in answer.splitlines() if line.strip()
        ]

    def test_json_on_a_terminal_draws_nothing(self, logs):
        status, out, screen = on_terminal(
            "drift", *RANGES, "--data", str(logs / "data"), "-o", "json"
        )
        assert status == 0, screen
        assert_no_progress(screen)
        assert screen.strip() == ""
        assert "amount" in json.loads(out)["features"]

    def test_piped_stderr_gets_nothing(self, logs):
        done = piped("drift", *RANGES, "--data", str(logs / "data"))
        assert done.returncode == 0, done.stderr
        assert_no_progress(done.stderr)
        assert done.stderr == ""
        evaluated = piped(
            "evaluate",
            "--data",
            str(logs / "data"),
            "--outcomes",
            str(logs / "outcomes.csv"),
            "--label",
            "fraud",
            "--min-cohort",
            "10",
        )
        assert evaluated.returncode == 0, evaluated.stderr
        assert evaluated.stderr == ""
