"""``predlog bench SERVICE``: what predlog costs your own service, measured.

It serves SERVICE twice on free local ports, with predlog on and with predlog a
pass-through (``PREDLOG_ENABLED=false``), same environment otherwise, and alternates
closed-loop and open-loop load between them. A service without predlog's line gets it
in the served processes (``predlog.tools.bench._bootstrap``), so its cost is known before
adopting it. It prints throughput and latency, pooled and as ratios per round, CPU per
request of each server's whole process tree, and the records lost (requests predlog
was asked to record that have none: must be 0), and writes an HTML report with the
latency CDFs of both variants.

``command`` is the click command: ``predlog bench`` (or ``python -m predlog bench``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from predlog._settings import MiddlewareSettings, Settings, env_var, setting_names
from predlog.tools.cli import output_of, output_option, print_json, setting_option

#: Variables the bench sets itself in each served process.
_SET_BY_BENCH = frozenset({env_var("data_dir"), env_var("enabled")})

__all__ = ["command", "read_bodies"]


def read_bodies(path: Path) -> list[bytes]:
    """The sample bodies: the file as one JSON document, or one JSON document a line."""
    text = path.read_text()
    try:
        json.loads(text)
    except ValueError:
        pass
    else:
        return [text.strip().encode()]
    bodies = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            raise click.BadParameter(
                f"{path}:{number} is not JSON", param_hint="--request"
            ) from None
        bodies.append(line.strip().encode())
    if not bodies:
        raise click.BadParameter(f"{path} holds no request body", param_hint="--request")
    return bodies


def _options_from(model_name: str | None) -> list[str]:
    """Where the options of an added line come from: the option, and every predlog
    setting's variable that is set (names only: some hold secrets)."""
    names = setting_names(Settings) | setting_names(MiddlewareSettings)
    declared = {env_var(n) for n in names}
    found = sorted(v for v in declared - _SET_BY_BENCH if os.environ.get(v))
    return ["--model-name", *found] if model_name else found


@click.command(name="bench")
@click.argument("service")
@click.option(
    "--request",
    "request_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A sample JSON request body, or several, one per line; sent in turn.",
)
@click.option(
    "--path",
    default=None,
    help="The route to POST to. [default: a BentoML service's first API, else /predict]",
)
@click.option(
    "--duration",
    default=150.0,
    show_default=True,
    type=click.FloatRange(min=4.0),
    help="Seconds of measured load in all, over every round and both variants.",
)
@click.option(
    "--rounds",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rounds; each gives each variant a closed-loop and an open-loop slice.",
)
@click.option(
    "--connections",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Concurrent connections of the closed loop.",
)
@click.option(
    "--load",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.01, max=1.0),
    help="Open-loop arrival rate, as a share of the pass-through's closed-loop throughput.",
)
@click.option(
    "--html",
    "html_file",
    default=Path("predlog-bench.html"),
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML report with the latency CDFs.",
)
@setting_option(
    "--model-name",
    setting="model_name",
    help="model_name of the line the bench adds to a service without one (other "
    "options: PREDLOG_* variables).",
)
@output_option
def command(
    service: str,
    *,
    request_file: Path,
    path: str | None,
    duration: float,
    rounds: int,
    connections: int,
    load: float,
    html_file: Path,
    model_name: str | None,
    output: str,
    as_json: bool,
) -> None:
    """Measure what predlog costs SERVICE (module:Service for BentoML, module:app for ASGI).

    When SERVICE has no predlog line, the bench adds it in the served processes (never
    in your files). Exits 1 if a request predlog was asked to record has no record.
    """
    try:
        from predlog.tools.bench import _html, _run, _summary  # noqa: PLC0415  # only when run
    except ImportError as exc:  # psutil comes with BentoML, not with every ASGI app
        raise click.ClickException(
            f"predlog bench needs {exc.name}: pip install {exc.name}"
        ) from None

    plan = _run.Plan(
        service,
        read_bodies(request_file),
        path,
        duration,
        rounds,
        connections,
        load,
        Path.cwd(),
        {"model_name": model_name} if model_name else {},
        _options_from(model_name),
    )
    try:
        out = _run.run(plan)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    figures = _summary.figures(out)
    text = _summary.text(figures)
    charts = {
        f"{load_name} loop": {
            name: [ms for s in getattr(v, load_name) for ms in s.latencies_ms]
            for name, v in out.variants.items()
        }
        for load_name in ("closed", "open")
    }
    _html.write(html_file, text, charts)
    if output_of(output, as_json) == "json":
        print_json(_summary.plain({**figures, "html": str(html_file)}))
    else:
        click.echo(f"{text}\nHTML report: {html_file}")
    if out.variants["predlog"].lost:
        raise SystemExit(1)
