"""``haltwatch health`` and ``haltwatch config``: commands for operators and scripts.

Kept apart from ``haltwatch/cli.py`` (which registers them) so that the connector and worker commands
stay short. Each has ``--json`` for scripts; human output is one line per fact.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Annotated, Any

import orjson
import typer

from access.secrets import redact

ApiUrl = Annotated[
    str, typer.Option(envvar="HALTWATCH_API", help="Base URL of a running worker's web server.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (one JSON object).")]


def fetch_health(api: str, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of a worker's /health/ready; raises OSError when it does not answer."""
    url = f"{api.rstrip('/')}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), dict(orjson.loads(response.read()))
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, dict(orjson.loads(body))
        except orjson.JSONDecodeError:
            return exc.code, {"status": "failing", "reason": body.decode(errors="replace")[:300]}


def health(
    api: ApiUrl = "http://127.0.0.1:6066",
    as_json: JsonOpt = False,
) -> None:
    """Ask a running worker whether it is ready (Kafka, ClickHouse, chains); exit 0 ok/degraded, 1 failing.

    Exit 2 when the worker does not answer. Usable as a container health check."""
    try:
        code, body = fetch_health(api)
    except OSError as exc:
        message = f"worker at {api} does not answer: {exc}"
        if as_json:
            typer.echo(orjson.dumps({"status": "unreachable", "reason": redact(message)}).decode())
        else:
            typer.echo(redact(message), err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(orjson.dumps(body).decode())
    else:
        typer.echo(f"{body.get('status', '?')} (HTTP {code})")
        for check in body.get("checks", []):
            typer.echo(f"  {check['name']:<11} {check['status']:<9} {check['reason']}")
    raise typer.Exit(1 if code >= 500 else 0)


def config(
    ctx: typer.Context,
    command: Annotated[str | None, typer.Argument(help="Only this command's settings.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the settings each command would run with and where each comes from (secrets masked).

    Precedence: command line, then environment (HALTWATCH_...), then the --config file, then defaults."""
    from haltwatch.config import effective

    group: Any = ctx.find_root().command
    names = [command] if command else sorted(n for n in group.commands if n != "config")
    if command and command not in group.commands:
        raise typer.BadParameter(f"no command {command!r}; commands: {', '.join(sorted(group.commands))}")
    default_map = ctx.find_root().default_map or {}
    rows = [row for name in names for row in effective(group, default_map, os.environ, name)]
    problems = sorted({row["problem"] for row in rows if row["problem"]})
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
    else:
        current = None
        for row in rows:
            if row["command"] != current:
                current = row["command"]
                typer.echo(f"[{current}]")
            mark = "  <- invalid" if row["problem"] else ""
            typer.echo(f"  {row['setting']:<24} = {row['value']!r:<40} ({row['source']}){mark}")
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command()(health)
    app.command()(config)
