"""Every shell command the README shows, and every command the demo prints, runs as printed.

The commands are read from README.md's ``sh``/``bash``/``shell`` blocks, one step per
command (``\\`` continuations and multi-line quotes joined), and run in order with bash in
one working directory that holds the fraud demo's data as ``./predlog-data`` (and its
audit log as ``./audit``), ``predlog`` and ``python`` from this virtualenv first on PATH,
and this repository importable. A step fails on a non-zero exit or a traceback.

A command that cannot run here says why in the README itself, in its comment:
``needs: WHAT`` (Docker, a Kafka broker, an S3 bucket, a running server, minutes of time)
or ``not run: WHY``. On a comment line of its own the marker covers every command after it
in that block; at the end of a command's comment it covers that command. Such steps are
reported as skipped with that reason, never as passed.

Placeholders are filled from the demo's data by ``SUBSTITUTE`` and nothing else in a
command changes. Files a command reads that a user would bring (``chargebacks.csv``) are
written from the demo's records before the steps run. ``export`` carries on to the next
steps of the same block, as in one shell.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from examples.fraud_service.demo import DEMO_AUDIT_KEY
from services.bentoserve import free_port

from tests.helpers import ROOT, child_env, read_all

pytestmark = pytest.mark.integration

SHELLS = {"sh", "bash", "shell"}
FENCE = re.compile(r"^```(\S*)\s*$")
MARKER = re.compile(r"(?:^|[\s;(])(needs|not run):\s*(.+?)\s*$")
TRACEBACK = "Traceback (most recent call last)"
TIMEOUT_S = 120


@dataclass(frozen=True)
class Step:
    """One command: where it starts in the README, its block, its text, why it is skipped."""

    line: int
    block: int
    text: str
    skip: str | None = None


def scan(text: str) -> tuple[bool, list[str]]:
    """Whether ``text`` is a complete command (quotes closed, no trailing ``\\``), and the
    text of its comments (``#`` at a word start outside quotes, to the end of the line)."""
    quote, comments, i = "", [], 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1].isspace()):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            comments.append(text[i + 1 : end])
            i = end
        i += 1
    return not quote and not text.endswith("\\"), comments


def marker(comments: list[str]) -> str | None:
    for comment in comments:
        found = MARKER.search(comment)
        if found:
            return f"{found.group(1)}: {found.group(2)}"
    return None


def readme_steps(markdown: str) -> list[Step]:
    """The commands of the README's shell blocks, in order."""
    steps: list[Step] = []
    block = shell = 0
    covering: str | None = None
    pending: list[str] = []
    start = 0
    for number, line in enumerate(markdown.splitlines(), 1):
        fence = FENCE.match(line)
        if fence and not pending:
            if block:
                block = shell = 0
            else:
                block, shell, covering = number, fence.group(1) in SHELLS, None
            continue
        if not shell or (not pending and not line.strip()):
            continue
        if not pending and line.lstrip().startswith("#"):
            covering = marker([line.lstrip()[1:]]) or covering
            continue
        start = start if pending else number
        pending.append(line)
        complete, comments = scan("\n".join(pending))
        if complete:
            text = "\n".join(pending)
            steps.append(Step(start, block, text, marker(comments) or covering))
            pending = []
    assert not pending, f"README.md:{start}: a command never ends (unclosed quote or \\)"
    return steps


def ident(step: Step) -> str:
    words = re.sub(r"\s+", " ", step.text.split("#", 1)[0]).strip()
    return f"L{step.line}:{words[:40]}"


README_STEPS = readme_steps((ROOT / "README.md").read_text())


@dataclass
class Demo:
    """The fraud demo's run: its output, its data, and the values the placeholders take."""

    workdir: Path
    stdout: str
    env: dict[str, str]
    substitute: dict[str, str]
    jaeger: bool


def reachable_jaeger() -> tuple[str, str] | None:
    query, otlp = os.environ.get("PREDLOG_TEST_JAEGER"), os.environ.get("PREDLOG_TEST_OTLP")
    if not query or not otlp:
        return None
    try:
        httpx.get(f"{query}/api/services", timeout=3).raise_for_status()
    except httpx.HTTPError:
        return None
    return query, otlp


def trusted_public_key() -> str:
    """The public half of the key the demo signs with, derived here rather than read from
    the log directory (which is not to be trusted)."""
    signing = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(DEMO_AUDIT_KEY))
    raw = signing.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return raw.hex()


def write_outcomes(rows: list[dict], path: Path) -> None:
    """The chargebacks file a user would bring: one outcome per demo request."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["transaction_id", "outcome"])
        for r in rows:
            out.writerow([r["request_id"], "fraud" if r["decision"] == "declined" else "legit"])


def halves(rows: list[dict]) -> tuple[str, str]:
    """Two ranges that split the demo's records in time: the README's example dates
    hold no records here."""
    times = sorted(r["timestamp_utc"] for r in rows)
    mid, end = times[len(times) // 2], times[-1] + timedelta(seconds=1)
    return f"{times[0].isoformat()}..{mid.isoformat()}", f"{mid.isoformat()}..{end.isoformat()}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    """`make demo`'s data, made once: the demo run with ``--exit-after-demo``."""
    workdir = tmp_path_factory.mktemp("readme")
    data = workdir / "predlog-data"
    jaeger = reachable_jaeger()
    tracing = ["--jaeger", jaeger[0], "--otlp", jaeger[1]] if jaeger else ["--no-traces"]
    command = ["-m", "examples.fraud_service.demo", "--exit-after-demo", "--requests", "200"]
    proc = subprocess.run(
        [sys.executable, *command, "--port", str(free_port()), "--data", str(data), *tracing],
        cwd=ROOT,
        env=child_env(PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (workdir / "audit").symlink_to(data / "audit")
    rows = read_all(data).to_pylist()
    write_outcomes(rows, workdir / "chargebacks.csv")
    declined = re.search(r"as predlog recorded it \((\S+)\)", proc.stdout)
    assert declined, proc.stdout
    key = trusted_public_key()
    baseline, current = halves(rows)
    substitute = {
        "REQ-123": declined.group(1),
        "REQUEST_ID": declined.group(1),
        "<hex>": key,
        "<the key you trust>": key,
        "2026-10-01..2026-10-08": baseline,
        "2026-11-01..2026-11-08": current,
    }
    env = child_env(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",
        PREDLOG_DATA_DIR=str(data),
        BENTOML_DO_NOT_TRACK="true",
    )
    return Demo(workdir, proc.stdout, env, substitute, jaeger is not None)


#: The environment each README block has built so far with ``export``.
BLOCK_ENV: dict[int, dict[str, str]] = {}


def run(command: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run ``command`` with bash as printed; fail on a non-zero exit or a traceback.
    Returns the environment the command left behind (for ``export``)."""
    env_file = cwd / ".step-env"
    script = f'{command}\n__rc=$?; env -0 > "{env_file}"; exit $__rc\n'
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    said = f"$ {command}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{said}"
    assert TRACEBACK not in proc.stdout + proc.stderr, said
    pairs = (item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
    return dict(pairs)


def filled(text: str, substitute: dict[str, str]) -> str:
    for placeholder in sorted(substitute, key=len, reverse=True):
        text = text.replace(placeholder, substitute[placeholder])
    return text


@pytest.mark.parametrize("step", README_STEPS, ids=ident)
def test_readme_command(step: Step, demo: Demo):
    if step.skip:
        pytest.skip(f"README.md:{step.line}: {step.skip}")
    env = BLOCK_ENV.get(step.block, demo.env)
    BLOCK_ENV[step.block] = run(filled(step.text, demo.substitute), env, demo.workdir)


#: The commands the demo prints, by the words that introduce them.
DEMO_COMMANDS = {
    "prove": r"prove this decision: (.+)$",
    "verify": r"verify the whole log: (.+?)(?: \(or set \w+\))?$",
    "query": r"^  (python -c .+)$",
    "waterfall": r"waterfall (.+)$",
}


@pytest.mark.parametrize("kind", DEMO_COMMANDS)
def test_demo_printed_command(kind: str, demo: Demo):
    if kind == "waterfall" and not demo.jaeger:
        pytest.skip("needs Jaeger: PREDLOG_TEST_JAEGER/PREDLOG_TEST_OTLP unset or unreachable")
    printed = re.search(DEMO_COMMANDS[kind], demo.stdout, re.MULTILINE)
    assert printed, f"the demo no longer prints its {kind} command:\n{demo.stdout}"
    run(filled(printed.group(1), demo.substitute), demo.env, demo.workdir)


def test_parser_reads_markers_and_continuations():
    """The README parser joins continuations and quoted newlines and reads both marker forms."""
    steps = readme_steps(
        "```sh\n# needs: docker\ndocker run x\n```\n"
        "```bash\na \\\n  b   # does a thing; not run: because\n"
        'c "one\n two"  # it\'s fine\n```\n```python\nx = 1\n```\n'
    )
    assert [(s.line, s.text, s.skip) for s in steps] == [
        (3, "docker run x", "needs: docker"),
        (6, "a \\\n  b   # does a thing; not run: because", "not run: because"),
        (8, 'c "one\n two"  # it\'s fine', None),
    ]
