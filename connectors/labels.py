"""Exchange wallet labels and the classification of transfers they allow.

Label files are TOML, one ``[[wallet]]`` table per address, so each fact can carry where it comes from.
Several files merge in order; a later file may add wallets but never silently moves an address to
another exchange: that is a :class:`LabelError`, because a wrong owner turns deposits into withdrawals.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from schemas.records import Direction

_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class LabelError(ValueError):
    """A label file is wrong; the message names the file, the entry and the problem."""


class Role(StrEnum):
    """What a labelled wallet is used for; only hot wallets pay out withdrawals."""

    HOT = "hot"
    COLD = "cold"
    DEPOSIT = "deposit"


@dataclass(frozen=True, slots=True)
class Wallet:
    exchange: str
    chain: str
    address: str
    role: Role
    source: str


@dataclass(frozen=True, slots=True)
class Classification:
    """One exchange's view of a transfer."""

    exchange: str
    direction: Direction


def normalize_address(chain_family: str, address: str) -> str:
    """Canonical form used for lookups: lower-case hex for EVM chains."""
    if chain_family == "evm":
        if not _EVM_ADDRESS.match(address):
            raise LabelError(f"not an EVM address (0x + 40 hex digits): {address!r}")
        return address.lower()
    return address


class LabelRegistry:
    """Wallet → exchange lookups for one or more chains."""

    def __init__(self, wallets: Iterable[Wallet] = ()) -> None:
        self._by_chain: dict[str, dict[str, Wallet]] = {}
        for wallet in wallets:
            self.add(wallet, origin="code")

    def add(self, wallet: Wallet, origin: str) -> None:
        table = self._by_chain.setdefault(wallet.chain, {})
        existing = table.get(wallet.address)
        if existing is not None and existing.exchange != wallet.exchange:
            raise LabelError(
                f"{origin}: {wallet.address} on {wallet.chain} is labelled {wallet.exchange!r}, "
                f"but {existing.exchange!r} already claims it ({existing.source})"
            )
        table[wallet.address] = wallet

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> LabelRegistry:
        registry = cls()
        for path in paths:
            for wallet in load_label_file(path):
                registry.add(wallet, origin=str(path))
        return registry

    def wallets(self, chain: str) -> list[Wallet]:
        return list(self._by_chain.get(chain, {}).values())

    def exchanges(self, chain: str) -> set[str]:
        return {w.exchange for w in self._by_chain.get(chain, {}).values()}

    def addresses(self, chain: str) -> set[str]:
        return set(self._by_chain.get(chain, {}))

    def lookup(self, chain: str, address: str) -> Wallet | None:
        return self._by_chain.get(chain, {}).get(address.lower())

    def classify(self, chain: str, sender: str, recipient: str) -> list[Classification]:
        """Every exchange's view of a transfer; empty when no exchange is involved in a way that counts.

        A payout from exchange A's hot wallet to exchange B is a withdrawal for A and a deposit for B.
        """
        src = self.lookup(chain, sender)
        dst = self.lookup(chain, recipient)
        if src is not None and dst is not None and src.exchange == dst.exchange:
            return [Classification(src.exchange, Direction.INTERNAL)]
        result = []
        if src is not None and src.role is Role.HOT:
            result.append(Classification(src.exchange, Direction.WITHDRAWAL))
        if dst is not None:
            result.append(Classification(dst.exchange, Direction.DEPOSIT))
        return result


def load_label_file(path: Path, chain_family: str = "evm") -> list[Wallet]:
    """Read and validate one TOML label file."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise LabelError(f"{path}: cannot read label file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LabelError(f"{path}: not valid TOML: {exc}") from None
    entries = data.get("wallet", [])
    if not isinstance(entries, list):
        raise LabelError(f"{path}: 'wallet' must be an array of tables ([[wallet]])")
    wallets = []
    for i, entry in enumerate(entries, start=1):
        where = f"{path}: wallet #{i}"
        missing = [k for k in ("exchange", "chain", "address", "role") if not isinstance(entry.get(k), str)]
        if missing:
            raise LabelError(f"{where}: missing or non-text field(s) {', '.join(missing)}")
        try:
            role = Role(entry["role"])
        except ValueError:
            raise LabelError(f"{where}: role must be one of {[r.value for r in Role]}, got {entry['role']!r}") from None
        try:
            address = normalize_address(chain_family, entry["address"])
        except LabelError as exc:
            raise LabelError(f"{where}: {exc}") from None
        exchange = entry["exchange"].strip().lower()
        if not exchange:
            raise LabelError(f"{where}: exchange must not be empty")
        wallets.append(Wallet(exchange, entry["chain"], address, role, str(entry.get("source", path.name))))
    return wallets
