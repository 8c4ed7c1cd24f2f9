"""The ``haltwatch`` command: one entry point for the connector, the worker, queries and the demo.

Every option can also be set by an environment variable (shown in ``--help``), which is how
docker-compose configures the services, or in a TOML file given with ``--config`` / ``HALTWATCH_CONFIG``
(``haltwatch/config.py``): command line, then environment, then file, then default. Every command runs
with secrets redacted from its logs and errors (``access/secrets.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from access import secrets
from access.kafka_security import quiet_client_libraries
from haltwatch import chain_commands, follow, labels_command, operator_cli, worker_command
from haltwatch.setting_types import FiniteNumber
from haltwatch.shared_options import ChdbOpt, ClickHouseOpt

app = typer.Typer(
    help="Detect crypto-exchange withdrawal halts from on-chain data.\n\n"
         "Settings come from, first match wins: the command line, the HALTWATCH_* environment variable shown "
         "in each command's --help, the --config TOML file (keys are the flags without --, such as ws-url; "
         "top-level keys for every command, [COMMAND] sections for one; `haltwatch config` shows what "
         "applies), then the defaults.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold node URLs with API keys and database passwords
    rich_markup_mode=None,  # a usage error is one plain "Error: ..." line a log pipeline keeps, not a box
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="HALTWATCH_CONFIG", help="TOML settings file; checked in full at start.",
                     dir_okay=False),
    ] = None,
) -> None:
    if config is not None:
        from haltwatch.config import ConfigError, load_config

        try:
            ctx.default_map = load_config(config, ctx.command)
            for section in (ctx.default_map or {}).values():
                for key, value in section.items():
                    secrets.register_setting(key, value)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


chain_commands.register(app)
labels_command.register(app)
worker_command.register(app)


ApiOpt = Annotated[
    str | None,
    typer.Option(envvar="HALTWATCH_API", help="Read through a running worker's JSON API, e.g. http://127.0.0.1:6066 "
                 "(the way to read its embedded chdb store while it runs)."),
]


def _print_rows(rows: list[dict[str, object]], as_json: bool, lines: list[str]) -> None:
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    for line in lines:
        typer.echo(line)


@app.command()
def status(
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    api: ApiOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """What is down right now: state, last withdrawal, gap and expected rate per exchange and chain."""
    from streams.store.report import SourceError, status_lines, status_rows

    quiet_client_libraries()  # an unreachable server is the one error line below, not the driver's traceback
    try:
        rows = status_rows(exchange, api, clickhouse_url, chdb_path)
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print_rows(rows, as_json, [] if as_json else status_lines(rows))


@app.command()
def outages(
    exchange: Annotated[str | None, typer.Option(help="Only this exchange.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only outages active since then (still open, or resolved after it): seconds, "
                     "an ISO date/time (UTC) or an age like 6h, 7d."),
    ] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Every state change, not only the latest.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, newest first.")] = 100,
    clickhouse_url: ClickHouseOpt = None,
    chdb_path: ChdbOpt = Path(".haltwatch/chdb"),
    api: ApiOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List incidents stored in ClickHouse: the latest state of each outage, or every version with --all."""
    import time

    from streams.store.report import SourceError, outage_lines, outage_rows, parse_since

    quiet_client_libraries()
    try:
        since_s = parse_since(since, time.time()) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    try:
        rows = outage_rows(exchange, since_s, all_versions, limit, api, clickhouse_url, chdb_path)
    except SourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print_rows(rows, as_json, [] if as_json else outage_lines(rows))


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help="halt | stall | normal")] = "halt",
    keep_running: Annotated[bool, typer.Option(help="Leave Kafka and anvil running at the end.")] = False,
) -> None:
    """Play an exchange halt on a local chain and watch haltwatch detect it (starts and stops everything)."""
    from haltwatch.demo import run_demo

    raise typer.Exit(run_demo(scenario, keep_running))


operator_cli.register(app)
follow.register(app)


def hoist_config(argv: list[str]) -> list[str]:
    """Accept ``--config FILE`` after the command too (``haltwatch worker --config f.toml``): it is an option
    of ``haltwatch`` itself, so it moves to the front."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return [arg, argv[i + 1], *argv[:i], *argv[i + 2:]]
        if arg.startswith("--config="):
            return [arg, *argv[:i], *argv[i + 1:]]
    return argv


@app.command()
def backtest(
    input_path: Annotated[
        Path, typer.Option("--input", exists=True, dir_okay=False, help="Events as on the topics: JSONL or JSONL.gz.")
    ],
    output_path: Annotated[Path, typer.Option("--output", help="Where to write the detector's outputs (JSONL).")],
    false_alarms: Annotated[
        float, typer.Option(parser=FiniteNumber(), help="False alarms allowed per exchange per budget period.")
    ] = 1.0,
    budget_days: Annotated[
        float, typer.Option(parser=FiniteNumber(), help="Length of the false-alarm budget period, days.")
    ] = 90.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a file of transfer events and chain heads through the same detector the worker runs.

    Exits 1 when the replay proves nothing (the input is cut short or holds no valid record), after the
    summary, so a script cannot mistake an empty or corrupt recording for a quiet one."""
    from streams.detection import DetectionPolicy
    from streams.detection.backtest import BacktestError, run_backtest

    try:
        policy = DetectionPolicy(false_alarms_per_exchange=false_alarms, budget_days=budget_days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not output_path.parent.is_dir():
        raise typer.BadParameter(f"{output_path.parent} is not a directory", param_hint="'--output'")
    try:
        summary = run_backtest(input_path, output_path, policy, progress=progress and not as_json)
    except BacktestError as exc:
        typer.echo(f"backtest failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"backtest failed: {exc.strerror or exc}: {exc.filename or input_path}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps(summary.to_json()).decode())
    else:
        typer.echo(summary.format())
    if summary.failure is not None:
        typer.echo(f"backtest failed: {summary.failure}", err=True)
        raise typer.Exit(1)


def main() -> None:
    secrets.install()
    secrets.register_command_line(sys.argv[1:], dict(os.environ))
    app(args=hoist_config(sys.argv[1:]), prog_name="haltwatch")
