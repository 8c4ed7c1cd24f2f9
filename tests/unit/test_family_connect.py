"""``haltwatch connect`` picks the connector by family; every family's options are checked before anything runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.checkpoint import CheckpointFile
from connectors.evm.config import EvmChainConfig
from connectors.evm.connector import EvmConnector
from connectors.family import ChainFamily
from connectors.feed_loop import WrongNetwork
from connectors.label_watch import LabelSource
from connectors.labels import LabelError
from connectors.reserve_import import select
from connectors.run_feed import FeedOptions, OptionError, feed_for, load_labels, parse_headers
from connectors.solana.config import SolanaConfig
from connectors.solana.connector import SolanaConnector
from connectors.tron.config import USDT, TronConfig
from haltwatch.cli import app
from tests.nodes.solana_node import SolanaNode
from tests.unit.feed_fakes import RecordingPublisher

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_an_evm_chain_still_needs_a_websocket() -> None:
    result = CliRunner().invoke(app, ["connect", "--chain", "ethereum", "--labels", "labels/ethereum.toml"])
    assert result.exit_code == 2 and "--ws-url" in result.output


def test_the_evm_refusals_name_their_flag() -> None:
    labels = ["--labels", "labels/ethereum.toml"]
    result = CliRunner().invoke(app, ["connect", "--chain", "ethereum", *labels])
    assert result.exit_code == 2
    assert "Invalid value for --ws-url: an EVM chain needs at least one node websocket URL" in result.stderr
    result = CliRunner().invoke(app, ["connect", "--chain", "ethereum", *labels, "--ws-url", "ws://a",
                                      "--url", "https://a"])
    assert result.exit_code == 2
    assert ("Invalid value for --url: ethereum is an EVM chain, followed over --ws-url; --url is for solana, "
            "bitcoin and tron (or say --family)") in " ".join(result.stderr.split())


def test_evm_options_become_the_evm_config() -> None:
    token = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    cls, config = feed_for(ChainFamily.EVM, FeedOptions(
        "base", [], ["ws://a, ws://b"], confirmations=3, start_block=7, tokens=[token], reorg_window=200,
        max_response_mb=2, chain_id=8453, lag_blocks=9, lag_check_s=12.5))
    assert cls is EvmConnector and isinstance(config, EvmChainConfig)
    assert (config.ws_urls, config.confirmations, config.start_block, config.chain_id) == (("ws://a", "ws://b"), 3,
                                                                                            7, 8453)
    assert config.tokens == frozenset({token.lower()}) and config.reorg_window == 200
    assert (config.lag_blocks, config.lag_check_s, config.max_frame_bytes) == (9, 12.5, 2 * 1024 * 1024)
    assert (config.rotation_min_funding, config.rotation_min_recipients) == (50, 20)
    _, chosen = feed_for(ChainFamily.EVM, FeedOptions("base", [], ["ws://a"], rotation_min_funding=0))
    assert isinstance(chosen, EvmChainConfig) and chosen.rotation_min_funding == 0


@pytest.mark.parametrize(("options", "flag", "problem"), [
    (FeedOptions("ethereum", []), "--ws-url", "needs at least one node websocket URL"),
    (FeedOptions("ethereum", ["https://a"], ["ws://a"]), "--url", "ethereum is an EVM chain"),
    (FeedOptions("ethereum", [], ["ws://a"], tokens=["0x123"]), None, "not a token contract address"),
])
def test_bad_evm_options_are_clear_errors(options: FeedOptions, flag: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        feed_for(ChainFamily.EVM, options)
    assert getattr(info.value, "flag", None) == flag
    assert flag is None or isinstance(info.value, OptionError)


def test_a_non_evm_chain_needs_an_http_endpoint() -> None:
    result = CliRunner().invoke(app, ["connect", "--chain", "solana", "--labels", str(FIXTURES / "solana")])
    assert result.exit_code == 2 and "--url" in result.output


def test_an_unknown_family_is_refused() -> None:
    result = CliRunner().invoke(app, ["connect", "--chain", "x", "--family", "cardano", "--labels", "labels"])
    assert result.exit_code == 2 and "unknown chain family" in result.output


def test_options_become_the_family_config() -> None:
    cls, config = feed_for(ChainFamily.SOLANA, FeedOptions("solana", ["https://a, https://b"], ["wss://a", "wss://b"],
                                                           commitment="confirmed", headers=["x-token: 1"]))
    assert cls is SolanaConnector and isinstance(config, SolanaConfig)
    assert config.urls == ("https://a", "https://b") and config.subscription == "slotSubscribe"
    assert config.headers == {"x-token": "1"} and config.head_poll_s == 5.0 and config.rotation_min_funding == 500
    _, tron = feed_for(ChainFamily.TRON, FeedOptions("tron", ["https://t"], tokens=[USDT]))
    assert isinstance(tron, TronConfig) and tron.tokens == frozenset({USDT}) and tron.head_poll_s == 3.0


@pytest.mark.parametrize(("family", "options", "problem"), [
    (ChainFamily.SOLANA, FeedOptions("solana", ["https://a"], tokens=[USDT]), "TRC-20"),
    (ChainFamily.TRON, FeedOptions("tron", ["https://a"], ["wss://a"]), "no websocket"),
    (ChainFamily.TRON, FeedOptions("tron", ["https://a"], tokens=["0xdeadbeef"]), "base58"),
    (ChainFamily.BITCOIN, FeedOptions("bitcoin", ["https://a", "https://b"], ["wss://a"]), "one --ws-url per --url"),
    (ChainFamily.BITCOIN, FeedOptions("bitcoin", []), "at least one endpoint"),
])
def test_bad_options_are_clear_errors(family: ChainFamily, options: FeedOptions, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        feed_for(family, options)


def test_headers_are_name_colon_value() -> None:
    assert parse_headers(["TRON-PRO-API-KEY: abc"]) == {"TRON-PRO-API-KEY": "abc"}
    with pytest.raises(ValueError, match="Name: value"):
        parse_headers(["no colon"])


def test_labels_of_another_family_for_the_chain_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.toml"
    path.write_text('[[wallet]]\nexchange = "okx"\nchain = "mysol"\nrole = "hot"\n'
                    'address = "9aB71bqATWmsKrhhTJUM8UHQWyTL8y61nVfZbXLkoGmY"\nfamily = "solana"\n')
    config = TronConfig("mysol", ("https://t",))
    with pytest.raises(LabelError, match="make chain 'mysol' a solana chain"):
        load_labels(config, [path])


async def test_an_endpoint_of_another_network_publishes_nothing(tmp_path: Path) -> None:
    with SolanaNode() as node:
        await asyncio.to_thread(node.produce, 10)
        config = SolanaConfig("solana", (node.url,), genesis_hash="EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG")
        publisher = RecordingPublisher()
        feed = SolanaConnector(config, LabelSource([FIXTURES / "solana" / "labels.toml"]), publisher,  # type: ignore[arg-type]
                               CheckpointFile(tmp_path / "cp.json"))
        with pytest.raises(WrongNetwork, match="serves genesis"):
            await asyncio.wait_for(feed.run(), 10)
    assert publisher.heads == [] and not (tmp_path / "cp.json").exists()


def test_reserve_lists_become_cold_wallets_of_known_exchanges() -> None:
    rows = [
        {"entity": "okex", "chain": "tron", "address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "source_file": "a.js"},
        {"entity": "wbtc", "chain": "tron", "address": "TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8", "source_file": "b.js"},
        {"entity": "huobi", "chain": "tron", "address": "Tnot-an-address", "source_file": "c.js"},
        {"entity": "okex", "chain": "solana", "address": "9aB71bqATWmsKrhhTJUM8UHQWyTL8y61nVfZbXLkoGmY",
         "source_file": "a.js"},
    ]
    reserves, notes = select(rows, "tron")
    assert [(r.exchange, r.address) for r in reserves] == [("okx", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")]
    assert notes and "not valid" in notes[0]
    with pytest.raises(ValueError, match="EVM"):
        select(rows, "ethereum")


def test_the_shipped_reserve_files_load() -> None:
    registry = LabelSource([Path("labels")]).registry
    for chain in ("solana", "tron", "bitcoin"):
        wallets = registry.wallets(chain)
        assert wallets and {w.role.value for w in wallets} == {"cold"}
