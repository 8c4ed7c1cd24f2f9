"""The loop every connector shares: which reason a failed session is counted under, and what ends the loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import InvalidURI

from connectors.bitcoin.config import BitcoinConfig
from connectors.bitcoin.connector import BitcoinConnector
from connectors.checkpoint import CheckpointFile
from connectors.endpoints import NodeLagging
from connectors.evm.config import EvmChainConfig
from connectors.evm.connector import EvmConnector
from connectors.evm.node import ChainIdMismatch
from connectors.evm.rpc import NodeRefused, RpcConnectionLost, RpcError, RpcTimeout
from connectors.feed_loop import ConnectionLost, FeedLoop, NodeError, WrongNetwork
from connectors.http_json import BadPayload, HttpError, HttpUnavailable, RequestTimeout
from connectors.label_watch import LabelSource
from connectors.linked_writer import MalformedBlock
from tests.unit.feed_fakes import RecordingPublisher

FIXTURES = Path(__file__).parents[1] / "fixtures"


def evm(tmp_path: Path) -> EvmConnector:
    config = EvmChainConfig("ethereum", ("ws://127.0.0.1:1",))
    return EvmConnector(config, LabelSource([FIXTURES / "evm" / "labels.toml"]), RecordingPublisher(),
                        CheckpointFile(tmp_path / "evm.json"))


def bitcoin(tmp_path: Path) -> BitcoinConnector:
    config = BitcoinConfig("bitcoin", ("http://127.0.0.1:1/api",))
    return BitcoinConnector(config, LabelSource([FIXTURES / "bitcoin" / "labels.toml"]),
                            RecordingPublisher(), CheckpointFile(tmp_path / "btc.json"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("error", "reason"), [
    (NodeLagging("node a is at 1, b at 9"), "node_lagging"),
    (NodeRefused("ws://node", 429), "rate_limited"),
    (NodeRefused("ws://node", 403), "refused"),
    (RpcConnectionLost("closed"), "connection"),
    (OSError("reset"), "connection"),
    (TimeoutError(), "connection"),
    (InvalidURI("ws://x", "bad"), "connection"),
    (RpcError("eth_getBlockByNumber", -32000, "header not found"), "node_error"),
    (RpcTimeout("eth_blockNumber", 30), "node_error"),
    (MalformedBlock("block header: 'hash'"), "malformed_block"),
    (KeyError("a bug"), "unexpected"),
])
def test_an_evm_session_failure_is_counted_under_its_reason(tmp_path: Path, error: Exception, reason: str) -> None:
    assert evm(tmp_path).classify_failure(error) == reason


@pytest.mark.parametrize(("error", "reason"), [
    (HttpError("http://node", 429, "slow down"), "rate_limited"),
    (HttpError("http://node", 401, "no key"), "refused"),
    (HttpUnavailable("refused"), "connection"),
    (RequestTimeout("30 s"), "connection"),
    (aiohttp.ClientPayloadError("cut"), "connection"),
    (ConnectionLost("block websocket closed"), "connection"),
    (BadPayload("<html>"), "node_error"),
    (NodeError("an error reply"), "node_error"),
    (MalformedBlock("no usable tx_count"), "malformed_block"),
    (RpcError("eth_call", -32000, "an EVM error is no HTTP family's"), "unexpected"),
])
def test_an_http_session_failure_is_counted_under_its_reason(tmp_path: Path, error: Exception, reason: str) -> None:
    assert bitcoin(tmp_path).classify_failure(error) == reason


@pytest.mark.parametrize("make", [evm, bitcoin])
def test_a_session_that_ended_by_a_stop_ends_the_loop(tmp_path: Path, make: Callable[[Path], FeedLoop[Any]]) -> None:
    assert make(tmp_path).classify_failure(None) is None


async def test_a_wrong_chain_id_ends_the_loop_instead_of_reconnecting(tmp_path: Path) -> None:
    connector = evm(tmp_path)

    async def wrong_chain(url: str) -> None:
        raise ChainIdMismatch(f"ethereum: node {url} serves chain id 5, configured 1")

    connector.session = wrong_chain  # type: ignore[method-assign]
    assert issubclass(ChainIdMismatch, WrongNetwork)
    with pytest.raises(ChainIdMismatch):
        await connector.run()
    assert connector.reconnects == 0
