"""What one Solana connector process needs to know: endpoints, commitment, and how cautious to be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from connectors.family import NATIVE_DECIMALS, ChainFamily
from connectors.feed import FeedConfig

COMMITMENTS = ("finalized", "confirmed")
"""``processed`` is not offered: getBlock refuses it, and a processed slot can still be dropped."""


@dataclass(frozen=True, slots=True)
class SolanaConfig(FeedConfig):
    """One Solana cluster: HTTP JSON-RPC endpoints (``urls``), their pubsub websockets, and a commitment.

    ``finalized`` (the default) follows rooted slots via ``rootSubscribe``: no fork can ever retract what
    was published, at ~13 s of latency. ``confirmed`` follows ``slotSubscribe`` and reads blocks confirmed
    by a supermajority, ~1 s behind; a confirmed block that is later dropped is retracted like a reorg.
    """

    commitment: str = "finalized"

    family: ClassVar[ChainFamily] = ChainFamily.SOLANA
    native_decimals: ClassVar[int] = NATIVE_DECIMALS[ChainFamily.SOLANA]
    """Lamports per SOL: 10**9."""

    def __post_init__(self) -> None:
        FeedConfig.__post_init__(self)
        if self.commitment not in COMMITMENTS:
            raise ValueError(f"{self.chain}: commitment must be one of {COMMITMENTS}, got {self.commitment!r}")

    @property
    def subscription(self) -> str:
        """The pubsub method whose notifications say a new slot reached our commitment (or nearly)."""
        return "rootSubscribe" if self.commitment == "finalized" else "slotSubscribe"
