"""logsBloom cross-check, on a block recorded from anvil."""

from pathlib import Path

import orjson

from connectors.evm.blocks import TRANSFER_TOPIC
from connectors.evm.bloom import bloom_may_contain
from haltwatch.traffic import TOKEN_ADDRESS

BLOCK = orjson.loads((Path(__file__).parents[1] / "fixtures" / "evm" / "block.json").read_bytes())["block"]


def test_the_bloom_of_a_block_with_transfers_admits_the_topic_and_the_token() -> None:
    assert bloom_may_contain(BLOCK["logsBloom"], bytes.fromhex(TRANSFER_TOPIC[2:]))
    assert bloom_may_contain(BLOCK["logsBloom"], bytes.fromhex(TOKEN_ADDRESS[2:]))


def test_an_empty_bloom_admits_nothing_and_an_unreadable_one_everything() -> None:
    assert not bloom_may_contain("0x" + "00" * 256, bytes.fromhex(TRANSFER_TOPIC[2:]))
    assert not bloom_may_contain(BLOCK["logsBloom"], b"\x01" * 32)
    assert bloom_may_contain("0xzz", b"anything")
