"""A worker restoring a partition tells exchange parts from chain parts by their table key alone, so it need
not parse every chain part's value (10,000 of them at 1,000 exchanges on 10 chains) just to skip it."""

from __future__ import annotations

import pytest

from streams.worker.state import is_chain_part_key, part_key


@pytest.mark.parametrize(
    ("exchange", "chain"),
    [("okx", "ethereum"), ("exchange0001", "chain9"), ('we"ird [name]', "tron"), ("[okx]", "solana")],
)
def test_every_chain_part_key_is_told_as_one(exchange: str, chain: str) -> None:
    assert is_chain_part_key(part_key(exchange, chain))


@pytest.mark.parametrize(
    "exchange", ["okx", "exchange0001", "[okx]", "[okx", '["okx"]', '["okx", 1]', '[1,"okx"]', "[]"]
)
def test_exchange_part_keys_are_not_taken_for_chain_parts(exchange: str) -> None:
    assert not is_chain_part_key(part_key(exchange, None))


def test_a_pair_written_another_way_is_not_a_chain_part_key() -> None:
    """Only the exact key :func:`part_key` writes counts: an exchange literally named like a pair with other
    spacing stays an exchange."""
    assert not is_chain_part_key('["okx", "ethereum"]')
