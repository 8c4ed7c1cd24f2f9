"""Chain families: which protocol a chain speaks, and what its addresses look like.

A connector process follows one chain of one family. Label files name chains, not families, so the family
of a chain comes from its name (``solana``, ``bitcoin``, ``tron`` and names starting with ``solana-`` …,
e.g. ``bitcoin-testnet``; anything else is EVM, as before) unless a wallet entry says ``family = "…"``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from connectors.addresses import bitcoin_address, solana_address, tron_address


class ChainFamily(StrEnum):
    EVM = "evm"
    SOLANA = "solana"
    BITCOIN = "bitcoin"
    TRON = "tron"


NATIVE_DECIMALS: dict[ChainFamily, int] = {ChainFamily.EVM: 18, ChainFamily.SOLANA: 9, ChainFamily.BITCOIN: 8,
                                           ChainFamily.TRON: 6}
"""Decimals of each family's native coin (wei, lamports, satoshis, sun); an EVM chain's config may differ."""

_CANONICAL: dict[ChainFamily, Callable[[str], str]] = {
    ChainFamily.SOLANA: solana_address,
    ChainFamily.BITCOIN: bitcoin_address,
    ChainFamily.TRON: tron_address,
}


def family_of(chain: str) -> ChainFamily:
    """The family a chain name implies: ``solana``/``solana-*`` → Solana, likewise Bitcoin, Tron; else EVM."""
    name = chain.strip().lower()
    for family in (ChainFamily.SOLANA, ChainFamily.BITCOIN, ChainFamily.TRON):
        if name == family.value or name.startswith(family.value + "-"):
            return family
    return ChainFamily.EVM


def parse_family(value: str) -> ChainFamily:
    """A family name as typed by a user; a ValueError that lists the choices otherwise."""
    try:
        return ChainFamily(value.strip().lower())
    except ValueError:
        raise ValueError(f"unknown chain family {value!r}; one of {[f.value for f in ChainFamily]}") from None


def canonical_address(family: ChainFamily, address: str) -> str:
    """Validate a non-EVM address and return the form lookups use (AddressError when it is not valid).

    EVM addresses are validated by :mod:`connectors.labels` (EIP-55), which owns that older path.
    """
    return _CANONICAL[family](address.strip())


def lookup_key(family: ChainFamily, address: str) -> str:
    """The registry key of an address read from a node: cheap, no validation (hot path, every transfer)."""
    if family is ChainFamily.EVM:
        return address.lower()
    if family is ChainFamily.BITCOIN and address[:3].lower() in ("bc1", "tb1", "bcr"):
        return address.lower()
    return address
