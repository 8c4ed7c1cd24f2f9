"""What one EVM connector process needs to know about its chain: any EVM chain is a configuration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from connectors.family import NATIVE_DECIMALS, ChainFamily

MIN_REORG_MARGIN = 64
"""Blocks remembered beyond the confirmation depth: a reorg deeper than ``confirmations`` (which should
not happen) is still undone exactly if it is at most this much deeper."""


@dataclass(frozen=True, slots=True)
class EvmChainConfig:
    """One chain, one or more websocket endpoints of it, and how cautious to be."""

    chain: str
    ws_urls: tuple[str, ...]
    confirmations: int = 0
    start_block: int | None = None
    """Where to start without a checkpoint; None means the node's current head."""
    chain_id: int | None = None
    """Expected ``eth_chainId``; a node answering another id is refused (None: not checked, only logged)."""
    tokens: frozenset[str] | None = None
    """ERC-20 contracts of interest (lower-case); None means every ERC-20 ``Transfer``."""
    native_decimals: int = NATIVE_DECIMALS[ChainFamily.EVM]
    heartbeat_s: float = 5.0
    reorg_window: int = 0
    """Published blocks remembered for reorgs; at least ``confirmations + 64`` whatever is set."""
    lag_blocks: int = 5
    """Switch to another endpoint when the current one is this many blocks behind the best."""
    lag_check_s: float = 30.0
    head_poll_s: float = 5.0
    """Ask the node for its head when no ``newHeads`` notification came for this long."""
    call_timeout_s: float = 30.0
    max_frame_bytes: int = 64 * 1024 * 1024
    prefetch: int = 8
    """Blocks read ahead of the one being published while catching up (bounded pipeline)."""
    labels_poll_s: float = 5.0
    rotation_min_funding: int = 50
    """Whole native coins an exchange wallet must send a fresh address for it to be watched as a possible
    new hot wallet (0 turns the rotation watch off)."""
    rotation_min_recipients: int = 20
    """Distinct outside addresses such a wallet must pay before it is suggested as a new hot wallet."""

    family: ClassVar[ChainFamily] = ChainFamily.EVM

    def __post_init__(self) -> None:
        if not self.ws_urls:
            raise ValueError(f"{self.chain}: at least one websocket URL is needed")
        if self.confirmations < 0:
            raise ValueError(f"{self.chain}: confirmations must be >= 0")

    @property
    def endpoint_urls(self) -> tuple[str, ...]:
        """The endpoints a session is opened on, in failover order."""
        return self.ws_urls

    @property
    def window(self) -> int:
        return max(self.reorg_window, self.confirmations + MIN_REORG_MARGIN)

    @property
    def source(self) -> str:
        """The dead-letter ``source`` of this connector."""
        return f"{self.family.value}:{self.chain}"


def parse_tokens(tokens: Sequence[str]) -> frozenset[str] | None:
    """ERC-20 contract addresses as typed (repeated, or comma/space separated as in one environment variable),
    lower-cased for :attr:`EvmChainConfig.tokens`; empty means every ERC-20. A malformed address is a
    ValueError, so a typo stops the command instead of silently watching no token."""
    found = {t.strip().lower() for item in tokens for t in item.replace(",", " ").split() if t.strip()}
    for token in found:
        if len(token) != 42 or not token.startswith("0x") or any(c not in "0123456789abcdef" for c in token[2:]):
            raise ValueError(f"not a token contract address: {token!r}")
    return frozenset(found) or None
