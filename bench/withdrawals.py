"""The withdrawals the anvil benches send: alternately a token transfer and an ETH payout to a fresh user."""

from __future__ import annotations

import random

from haltwatch.evm_token import transfer_calldata
from haltwatch.traffic import TOKEN_ADDRESS, random_address


def alternating_withdrawal(rng: random.Random, sender: str, i: int) -> dict[str, str]:
    """The ``i``-th withdrawal of a block from ``sender``: ETH when ``i`` is odd, the token when even; the
    amount grows with ``i``. Gas and nonce are the caller's."""
    user = random_address(rng)
    if i % 2:
        return {"from": sender, "to": user, "value": hex(10**15 + i)}
    return {"from": sender, "to": TOKEN_ADDRESS, "data": transfer_calldata(user, 10**6 + i)}
