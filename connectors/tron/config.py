"""What one Tron connector process needs to know: full-node HTTP endpoints, tokens, and how cautious to be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from connectors.family import NATIVE_DECIMALS, ChainFamily
from connectors.feed import FeedConfig

USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
"""Tether USD (TRC-20) on Tron mainnet: where exchanges pay out most stablecoins."""
KNOWN_DECIMALS = {USDT: 6}
"""Decimals known without asking the node (others are read once with ``triggerconstantcontract``)."""


@dataclass(frozen=True, slots=True)
class TronConfig(FeedConfig):
    """One Tron network through full-node HTTP endpoints (``urls``, e.g. ``https://api.trongrid.io``).

    There is no push feed: the connector polls ``getnowblock`` every ``head_poll_s`` (Tron makes a block
    every 3 s) and reads every number from its checkpoint. Blocks are final once solidified (~19 blocks,
    about a minute); ``confirmations`` 19 never retracts, 0 retracts the rare replaced block.
    """

    tokens: frozenset[str] | None = None
    """TRC-20 contracts of interest (base58 ``T…``); None means every TRC-20 ``Transfer``."""

    family: ClassVar[ChainFamily] = ChainFamily.TRON
    native_decimals: ClassVar[int] = NATIVE_DECIMALS[ChainFamily.TRON]
    """Sun per TRX: 10**6."""
