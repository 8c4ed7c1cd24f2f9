"""What one Bitcoin connector process needs to know: Esplora endpoints and how cautious to be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from connectors.family import NATIVE_DECIMALS, ChainFamily
from connectors.feed import FeedConfig


@dataclass(frozen=True, slots=True)
class BitcoinConfig(FeedConfig):
    """One Bitcoin network through Esplora REST endpoints (``urls``, e.g. ``https://mempool.space/api``) and,
    optionally, the mempool.space websocket of each (``ws_urls``) that pushes new blocks.

    Blocks come every ~10 minutes and one-block reorgs happen a few times a month: with ``confirmations``
    0 a replaced block is retracted; 1 or 2 trades ten or twenty minutes of latency for almost never
    retracting.
    """

    txs_per_page: int = 25
    """Esplora's fixed page size of ``/block/:hash/txs/:start_index``."""
    page_concurrency: int = 4
    """Pages of one block read at the same time (public endpoints rate-limit bursts)."""

    family: ClassVar[ChainFamily] = ChainFamily.BITCOIN
    native_decimals: ClassVar[int] = NATIVE_DECIMALS[ChainFamily.BITCOIN]
    """Satoshis per bitcoin: 10**8."""
