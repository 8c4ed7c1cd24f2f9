"""Kafka topic names: part of the public contract, so the major schema version is in each name."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under one prefix, so several deployments can share a cluster."""

    prefix: str = "haltwatch"

    @property
    def transfers(self) -> str:
        """Transfer events keyed by exchange, plus each block's head written to every partition."""
        return f"{self.prefix}.transfers.v1"

    @property
    def heads(self) -> str:
        """Chain heads keyed by chain: one per fully published block."""
        return f"{self.prefix}.heads.v1"

    @property
    def outages(self) -> str:
        """Outage state changes keyed by exchange, and correlated incidents: the product's public output."""
        return f"{self.prefix}.outages.v1"

    @property
    def chain_status(self) -> str:
        """Chain state changes (ok / chain_stalled / no_data) keyed by chain."""
        return f"{self.prefix}.chainstatus.v1"

    @property
    def dead_letters(self) -> str:
        """Input that could not be used, with the raw payload and the reason."""
        return f"{self.prefix}.deadletter.v1"
