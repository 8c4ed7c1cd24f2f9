"""``haltwatch labels discover``: propose an exchange's hot wallets from a chain's own blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from haltwatch.log_setup import LogFormat, configure_logging
from haltwatch.setting_types import UrlOf
from haltwatch.shared_options import LogFormatOpt, VerboseOpt

labels_app = typer.Typer(help="Work with exchange label files.", no_args_is_help=True)


@labels_app.command()
def discover(
    chain: Annotated[str, typer.Option(envvar="HALTWATCH_CHAIN", help="Chain name, as the connector's --chain.")],
    url: Annotated[
        list[str],
        typer.Option(envvar="HALTWATCH_URL", parser=UrlOf("http", "https", "ws", "wss", several=True),
                     help="Node endpoint, as the connector reads it (EVM: websocket; Solana: JSON-RPC; Bitcoin: "
                          "Esplora REST; Tron: full-node HTTP API); repeat for failover."),
    ],
    labels: Annotated[
        list[Path],
        typer.Option(envvar="HALTWATCH_LABELS", help="Label files or folders with the exchanges' known wallets "
                     "(any role): discovery starts from them."),
    ],
    out: Annotated[
        Path, typer.Option(help="Label file to write the proposed hot wallets to (appended to, never overwritten).")
    ],
    family: Annotated[
        str | None, typer.Option(envvar="HALTWATCH_FAMILY", help="evm | solana | bitcoin | tron; default: from the "
                                 "chain name.")
    ] = None,
    from_block: Annotated[int | None, typer.Option(min=0, help="First block (slot, height) to read.")] = None,
    to_block: Annotated[int | None, typer.Option(min=0, help="Last block to read (inclusive).")] = None,
    hours: Annotated[
        float | None, typer.Option(min=0.01, help="Instead of a range: the last HOURS of chain time up to the tip.")
    ] = None,
    min_funding: Annotated[
        float | None,
        typer.Option(min=0, help="Whole native coins a transfer from (or to) a known wallet must move to make its "
                     "counterparty a candidate [evm 50, solana 500, bitcoin 10, tron 100000]."),
    ] = None,
    min_recipients: Annotated[
        int, typer.Option(min=1, help="Distinct outside addresses a hot wallet must have paid.")
    ] = 20,
    window_min: Annotated[
        int, typer.Option(min=1, help="Minutes of chain time per steadiness window.")
    ] = 10,
    min_active_windows: Annotated[
        int, typer.Option(min=1, help="Windows with a payout a hot wallet must have.")
    ] = 3,
    resume_file: Annotated[
        Path | None, typer.Option(help="Progress file [.haltwatch/discover-CHAIN-FROM-TO.json]; a rerun with the "
                                  "same range resumes from it.")
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(envvar="HALTWATCH_HTTP_HEADER", help="Extra HTTP header 'Name: value'.")
    ] = None,
    prefetch: Annotated[int, typer.Option(min=1, help="Blocks read at the same time.")] = 8,
    show: Annotated[int, typer.Option(min=0, help="Rejected candidates to list after the proposals, nearest first.")
                    ] = 5,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per judged candidate.")] = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
) -> None:
    """Read blocks as the connector does and propose hot wallets of the exchanges in --labels, with evidence:
    funded by their known wallets (or paying into them), swept into by one-off deposit addresses, paying many
    outside addresses small amounts at a steady rate. Resumable; a user's own entries are never changed."""
    from connectors.family import NATIVE_DECIMALS, family_of, parse_family
    from connectors.hot_wallets import label_file
    from connectors.hot_wallets.discovery import Discovery, run_discovery
    from connectors.hot_wallets.evidence import HotWalletRule
    from connectors.hot_wallets.sources import SourceSettings
    from connectors.labels import LabelError, LabelRegistry
    from connectors.run_feed import DEFAULT_ROTATION_FUNDING, on_signals

    configure_logging(verbose, log_format)
    try:
        chosen = parse_family(family) if family else family_of(chain)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--family") from None
    if (hours is None) == (from_block is None or to_block is None):
        raise typer.BadParameter("give either --hours or both --from-block and --to-block", param_hint="--hours")
    if from_block is not None and to_block is not None and to_block < from_block:
        raise typer.BadParameter(f"must be at least --from-block ({from_block})", param_hint="--to-block")
    try:
        registry = LabelRegistry.from_files(labels)
    except LabelError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    if not registry.wallets(chain):
        raise typer.BadParameter(f"no wallet on chain {chain!r} in the label files: discovery starts from known "
                                 "wallets", param_hint="--labels")
    coins = DEFAULT_ROTATION_FUNDING[chosen] if min_funding is None else min_funding
    funding = {"native": int(coins * 10 ** NATIVE_DECIMALS[chosen])}
    headers = tuple(_header(h) for h in header or [])
    urls = [u.strip() for item in url for u in item.split(",") if u.strip()]
    settings = [SourceSettings(chain, u, headers, prefetch) for u in urls]
    rule = HotWalletRule(min_recipients=min_recipients, window_s=window_min * 60,
                         min_active_windows=min_active_windows)
    resume = resume_file or (lambda first, last: Path(f".haltwatch/discover-{chain}-{first}-{last}.json"))
    discovery = Discovery(chosen, settings, registry, funding, rule, resume, progress=progress)
    try:
        result = run_discovery(discovery, from_block, to_block, hours, on_signals)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not result.complete:  # stopped: proposals from part of the range would be judged on part of the evidence
        typer.echo(f"stopped at block {result.last + 1} of {result.first}..{result.until}; nothing written to {out}. "
                   f"Run again with --from-block {result.first} --to-block {result.until} to resume "
                   f"(progress in {result.resume_file})", err=True)
        raise typer.Exit(130)
    outcomes = label_file.write(out, chain, chosen, result.verdicts, registry, result.first, result.last)
    why = {o.verdict.evidence.address: ("written" if o.written else o.why) for o in outcomes}
    rejected = [v for v in result.verdicts if not v.hot][:show]
    if as_json:
        for v in [*result.hot, *rejected]:
            e = v.evidence
            typer.echo(orjson.dumps({
                "chain": chain, "exchange": e.exchange, "address": e.address, "hot": v.hot, "score": v.score,
                "failed": v.failed, "outcome": why.get(e.address, "not proposed"), "evidence": v.summary(),
                "blocks": [result.first, result.last], "blocks_per_s": round(result.blocks_per_s, 1),
            }).decode())
        return
    typer.echo(f"discover {chain} {result.first}..{result.last}: {result.blocks} blocks read in {result.seconds:.1f} s "
               f"({result.blocks_per_s:.1f} blocks/s); {len(result.hot)} hot wallet(s) proposed, "
               f"{sum(o.written for o in outcomes)} written to {out}")
    for v in result.hot:
        typer.echo(f"  hot  {v.evidence.exchange} {v.evidence.address} [{why[v.evidence.address]}]: {v.summary()}")
    for v in rejected:
        typer.echo(f"  not  {v.evidence.exchange} {v.evidence.address} (fails {', '.join(v.failed)}): {v.summary()}")


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise typer.BadParameter(f"expected 'Name: value', got {text!r}", param_hint="--header")
    return name.strip(), value.strip()


def register(app: typer.Typer) -> None:
    app.add_typer(labels_app, name="labels")
