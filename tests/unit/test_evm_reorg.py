"""Reorg walk-back, the checkpoint that remembers published blocks, and the small policies around them."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from connectors.backoff import Backoff
from connectors.checkpoint import Checkpoint, CheckpointError, CheckpointFile, PublishedBlock
from connectors.endpoints import EndpointPool, lagging_behind
from connectors.evm.backfill import LogRange
from connectors.evm.config import EvmChainConfig, parse_tokens
from connectors.evm.rpc import RpcError, RpcTimeout
from connectors.reorg import Fork, conflicts, find_fork, retractions
from connectors.run_feed import split_values
from schemas.records import Direction, TransferEvent


def h(tag: str, n: int) -> str:
    return "0x" + f"{tag}{n}".encode().hex().ljust(64, "0")


def transfer(block: int, tag: str, i: int) -> TransferEvent:
    return TransferEvent("ethereum", block, h(tag, block), 1_700_000_000 + 12 * block, h("tx" + tag, block * 10 + i),
                         i, "native", str(10**18), 18, "0x" + "a1" * 20, "0x" + "cc" * 20, "okx",
                         Direction.WITHDRAWAL)


def chain(tag: str, first: int, last: int, parent_tag: str | None = None) -> list[PublishedBlock]:
    """Blocks first..last of one fork; the first one's parent may belong to another fork."""
    blocks = []
    for n in range(first, last + 1):
        parent = h(parent_tag or tag, n - 1) if n == first else h(tag, n - 1)
        blocks.append(PublishedBlock(n, h(tag, n), parent, (transfer(n, tag, 0), transfer(n, tag, 1))))
    return blocks


def node(canonical: dict[int, str]):  # type: ignore[no-untyped-def]
    asked: list[int] = []

    async def canonical_hash(number: int) -> str | None:
        asked.append(number)
        return canonical.get(number)

    return canonical_hash, asked


def walk(recent: list[PublishedBlock], canonical: dict[int, str]) -> tuple[Fork, list[int]]:
    fetch, asked = node(canonical)
    return asyncio.run(find_fork(recent, fetch)), asked


def test_no_reorg_stops_at_the_newest_block() -> None:
    ours = chain("a", 100, 110)
    fork, asked = walk(ours, {b.number: b.hash for b in ours})
    assert fork.ancestor == ours[-1] and fork.orphaned == () and asked == [110]


def test_walks_back_to_the_common_ancestor_and_lists_orphans_newest_first() -> None:
    ours = chain("a", 100, 110)
    theirs = {n: (h("a", n) if n <= 106 else h("b", n)) for n in range(100, 112)}
    fork, asked = walk(ours, theirs)
    assert fork.ancestor is not None and fork.ancestor.number == 106
    assert [b.number for b in fork.orphaned] == [110, 109, 108, 107]
    assert asked == [110, 109, 108, 107, 106]


def test_a_shorter_new_chain_orphans_our_blocks_above_its_head_too() -> None:
    ours = chain("a", 100, 110)
    theirs = {n: (h("a", n) if n <= 104 else h("b", n)) for n in range(100, 108)}  # node head 107
    fork, _ = walk(ours, theirs)
    assert fork.ancestor is not None and fork.ancestor.number == 104
    assert [b.number for b in fork.orphaned] == list(range(110, 104, -1))


def test_a_fork_older_than_the_window_is_reported_not_guessed() -> None:
    ours = chain("a", 100, 110)
    fork, _ = walk(ours, {n: h("b", n) for n in range(90, 112)})
    assert fork.deeper_than_window and len(fork.orphaned) == 11


def test_retractions_are_the_published_events_marked_removed() -> None:
    orphaned = tuple(reversed(chain("a", 107, 110)))
    events = retractions(orphaned)
    assert events == [replace(t, removed=True) for b in orphaned for t in b.transfers]
    assert all(e.removed for e in events) and len(events) == 8
    assert {e.event_id for e in events} == {t.event_id for b in orphaned for t in b.transfers}


def test_a_header_conflicts_only_when_the_node_names_another_block_at_that_height() -> None:
    block = chain("a", 5, 5)[0]
    assert conflicts(block, h("b", 5))
    assert not conflicts(block, block.hash)
    assert not conflicts(block, None), "a node that lacks the height (lagging) is no evidence of a reorg"
    assert not conflicts(None, h("b", 5))


def test_checkpoint_keeps_a_window_and_rewinds_to_an_ancestor() -> None:
    blocks = chain("a", 1, 100)
    cp = Checkpoint.after("ethereum", blocks[0])
    for b in blocks[1:]:
        cp = cp.advance(b, window=70)
    assert (cp.number, cp.hash, len(cp.recent), cp.recent[0].number) == (100, blocks[-1].hash, 70, 31)
    with pytest.raises(ValueError, match="does not follow"):
        cp.advance(blocks[50], window=70)
    back = cp.rewind(90, blocks[89].hash)
    assert back.number == 90 and back.recent[-1].number == 90 and back.block(91) is None


def test_checkpoint_file_round_trip_and_the_legacy_format(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    blocks = chain("a", 7, 9)
    cp = Checkpoint.after("ethereum", blocks[0]).advance(blocks[1], 64).advance(blocks[2], 64)
    CheckpointFile(path).save(cp)
    assert CheckpointFile(path).load() == cp
    assert path.read_text().startswith('{"chain":"ethereum","number":9,')  # scripts grep for "number":N,
    path.write_text('{"chain": "ethereum", "number": 5, "hash": "0xabc"}')  # written before recent blocks existed
    assert CheckpointFile(path).load() == Checkpoint("ethereum", 5, "0xabc", ())
    path.write_bytes(orjson.dumps({"chain": "ethereum", "number": 5, "hash": "0x", "recent": [{"number": 5}]}))
    with pytest.raises(CheckpointError, match="fix or delete it"):
        CheckpointFile(path).load()


def test_the_reorg_window_covers_confirmations_plus_a_margin() -> None:
    assert EvmChainConfig("x", ("ws://a",), confirmations=12).window == 76
    assert EvmChainConfig("x", ("ws://a",), confirmations=12, reorg_window=300).window == 300
    with pytest.raises(ValueError, match="websocket URL"):
        EvmChainConfig("x", ())


@pytest.mark.parametrize(
    ("code", "message", "rate", "too_large"),
    [
        (-32005, "limit exceeded", False, True),
        (-32005, "query returned more than 10000 results", False, True),
        (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range", False,
         True),
        (-32005, "daily request count exceeded, request rate limited", True, False),
        (429, "Too Many Requests", True, False),
        (-32000, "header not found", False, False),
    ],
)
def test_node_errors_are_told_apart(code: int, message: str, rate: bool, too_large: bool) -> None:
    error = RpcError("eth_getLogs", code, message)
    assert (error.rate_limited, error.range_too_large) == (rate, too_large)


def test_timeouts_are_rpc_errors_that_name_the_call() -> None:
    error = RpcTimeout("eth_getBlockByNumber", 30)
    assert isinstance(error, RpcError) and "eth_getBlockByNumber" in str(error) and "30 s" in str(error)


def test_log_range_halves_down_to_one_and_grows_back() -> None:
    span = LogRange(initial=100, maximum=400)
    while span.shrink():
        pass
    assert span.span == 1 and not span.shrink()
    for _ in range(20):
        span.grow()
    assert span.span == 400


def test_endpoints_rotate_and_a_lagging_node_is_left_for_the_best_one() -> None:
    pool = EndpointPool(["ws://a", "ws://b", "ws://a", "ws://c"])
    assert pool.urls == ["ws://a", "ws://b", "ws://c"] and pool.others == ["ws://b", "ws://c"]
    assert pool.rotate() == "ws://b" and pool.rotate() == "ws://c" and pool.rotate() == "ws://a"
    assert lagging_behind(100, {"ws://b": 104, "ws://c": None}, threshold=5) is None
    assert lagging_behind(100, {"ws://b": 106, "ws://c": 110}, threshold=5) == ("ws://c", 110)
    assert lagging_behind(100, {"ws://b": None}, threshold=5) is None


def test_backoff_grows_with_jitter_caps_and_resets() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    steps = [1, 2, 4, 8, 8, 8]
    assert all(0.5 * s <= d <= 1.5 * s for d, s in zip(delays, steps, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 1.5


def test_cli_lists_of_urls_and_tokens() -> None:
    assert split_values(["ws://a, ws://b", "ws://c"]) == ("ws://a", "ws://b", "ws://c")
    token = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    assert parse_tokens([token]) == frozenset({token.lower()})
    assert parse_tokens([]) is None
    with pytest.raises(ValueError, match="not a token contract"):
        parse_tokens(["0x123"])
