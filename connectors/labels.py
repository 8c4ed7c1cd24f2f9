"""Exchange wallet labels and the classification of transfers they allow.

Label files are TOML, one ``[[wallet]]`` table per address, so each fact can carry where it comes from::

    [[wallet]]
    exchange = "okx"                 # lower-cased; the key of every event and of detection
    chain = "ethereum"               # the connector's --chain name
    address = "0x6cC5F688a315f3dC28A7781717a9A798a59fDA7b"   # mixed case must pass EIP-55
    role = "hot"                     # hot | cold | deposit: only hot wallets pay out withdrawals
    source = "Etherscan label 'OKX'" # where the fact comes from (free text, kept in the registry)
    # family = "solana"              # optional: only for a non-EVM chain whose name does not say it

Addresses are checked per chain family (:mod:`connectors.family`): EIP-55 for EVM chains, base58 for
Solana (case-sensitive), bech32 / base58check for Bitcoin, base58check ``T…`` (or hex ``41…``) for Tron.

Several files (or folders of ``*.toml`` files, read in name order) merge in order:

- a later file may add wallets;
- a later file that lists an address already labelled *for the same exchange* replaces that entry (its
  role and source): this is how a user file overrides a shipped default, e.g. turns a hot wallet cold;
- a later file may never move an address to *another* exchange: that is a :class:`LabelError` naming
  both files, because a wrong owner turns deposits into withdrawals;
- within one file an address appears once; a second entry is a :class:`LabelError` (a copy-paste slip).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from connectors.addresses import AddressError
from connectors.eip55 import checksum_error
from connectors.family import ChainFamily, canonical_address, family_of, lookup_key, parse_family
from schemas.records import Direction

log = logging.getLogger(__name__)
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
    origin: str = ""
    """The file the entry was read from (empty for wallets built in code)."""
    family: ChainFamily = ChainFamily.EVM
    """How the chain's addresses are written (and so matched)."""


@dataclass(frozen=True, slots=True)
class Classification:
    """One exchange's view of a transfer."""

    exchange: str
    direction: Direction


def normalize_address(chain_family: str, address: str) -> str:
    """Canonical form used for lookups: lower-case hex for EVM chains; see :mod:`connectors.addresses`."""
    if chain_family == "evm":
        if not _EVM_ADDRESS.match(address):
            raise LabelError(f"not an EVM address (0x + 40 hex digits): {address!r}")
        problem = checksum_error(address)
        if problem is not None:
            raise LabelError(problem)
        return address.lower()
    try:
        return canonical_address(parse_family(chain_family), address)
    except (AddressError, ValueError) as exc:
        raise LabelError(f"not a {chain_family} address: {address!r} ({exc})") from None


class LabelRegistry:
    """Wallet → exchange lookups for one or more chains."""

    def __init__(self, wallets: Iterable[Wallet] = ()) -> None:
        self._by_chain: dict[str, dict[str, Wallet]] = {}
        self._address_sets: dict[str, frozenset[str]] = {}
        self._families: dict[str, ChainFamily] = {}
        self.files: tuple[Path, ...] = ()
        """The label files this registry was read from, in merge order."""
        for wallet in wallets:
            self.add(wallet, origin="code")

    def add(self, wallet: Wallet, origin: str) -> None:
        """Add or override one wallet; moving an address to another exchange is a :class:`LabelError`."""
        family = self._families.setdefault(wallet.chain, wallet.family)
        if family is not wallet.family:
            raise LabelError(f"{origin}: {wallet.address} says chain {wallet.chain!r} is {wallet.family.value}, "
                             f"but earlier entries made it {family.value}")
        table = self._by_chain.setdefault(wallet.chain, {})
        existing = table.get(wallet.address)
        if existing is not None and existing.exchange != wallet.exchange:
            raise LabelError(
                f"{origin}: {wallet.address} on {wallet.chain} is labelled {wallet.exchange!r}, "
                f"but {existing.exchange!r} already claims it ({existing.origin or 'code'}: {existing.source})"
            )
        if existing is not None and existing.origin and existing.origin == wallet.origin:
            raise LabelError(f"{origin}: {wallet.address} on {wallet.chain} is listed twice in the same file")
        if existing is not None and existing.role is not wallet.role:
            log.info("%s: %s %s on %s is now %s (was %s in %s)", origin, wallet.exchange, wallet.address,
                     wallet.chain, wallet.role.value, existing.role.value, existing.origin or "code")
        table[wallet.address] = wallet
        self._address_sets.pop(wallet.chain, None)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> LabelRegistry:
        """Read and merge label files in order; folders contribute their ``*.toml`` files by name."""
        registry = cls()
        files = expand_label_paths(paths)
        for path in files:
            for wallet in load_label_file(path):
                registry.add(wallet, origin=str(path))
        registry.files = tuple(files)
        return registry

    def wallets(self, chain: str) -> list[Wallet]:
        return list(self._by_chain.get(chain, {}).values())

    def exchanges(self, chain: str) -> set[str]:
        return {w.exchange for w in self._by_chain.get(chain, {}).values()}

    def family(self, chain: str) -> ChainFamily | None:
        """The family of a labelled chain (None when no wallet of it is labelled)."""
        return self._families.get(chain)

    def addresses(self, chain: str) -> frozenset[str]:
        """Every labelled address of a chain (canonical form: lower case for EVM); cached, asked once per block."""
        cached = self._address_sets.get(chain)
        if cached is None:
            cached = self._address_sets[chain] = frozenset(self._by_chain.get(chain, {}))
        return cached

    def __len__(self) -> int:
        return sum(len(table) for table in self._by_chain.values())

    def lookup(self, chain: str, address: str) -> Wallet | None:
        """The wallet at an address as a node writes it (EVM: any case; base58 chains: exact)."""
        table = self._by_chain.get(chain)
        if table is None:
            return None
        return table.get(lookup_key(self._families.get(chain, ChainFamily.EVM), address))

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


def expand_label_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders replaced by their ``*.toml`` files in name order (read again at each reload)."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        found = sorted(p for p in path.glob("*.toml") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            key = file.resolve()
            if key not in seen:  # a file named twice (itself and by its folder) is read once
                seen.add(key)
                files.append(file)
    return files


def load_label_file(path: Path, chain_family: str | None = None) -> list[Wallet]:
    """Read and validate one TOML label file.

    Each entry's address is checked as an address of its chain's family: the entry's ``family`` field, else
    what the chain name implies (:func:`connectors.family.family_of`); ``chain_family`` forces one for all.
    """
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
        exchange = entry["exchange"].strip().lower()
        if not exchange:
            raise LabelError(f"{where}: exchange must not be empty")
        chain = entry["chain"].strip().lower()
        if not chain:
            raise LabelError(f"{where}: chain must not be empty")
        try:
            family = _entry_family(entry, chain, chain_family)
            address = normalize_address(family.value, entry["address"])
        except LabelError as exc:
            raise LabelError(f"{where}: {exc}{_family_hint(entry, chain, chain_family)}") from None
        source = entry.get("source", path.name)
        if not isinstance(source, str):
            raise LabelError(f"{where}: source must be text, got {source!r}")
        wallets.append(Wallet(exchange, chain, address, role, source, origin=str(path), family=family))
    return wallets


def _family_hint(entry: dict[str, object], chain: str, forced: str | None) -> str:
    """Why a non-0x address on a chain taken as EVM failed: most likely the family was not said."""
    address = entry.get("address")
    if forced is not None or "family" in entry or family_of(chain) is not ChainFamily.EVM:
        return ""
    if isinstance(address, str) and address.startswith("0x"):
        return ""
    return (f" (chain {chain!r} is taken as EVM: name it solana/bitcoin/tron or solana-… etc., or add "
            'family = "solana" | "bitcoin" | "tron" to the entry)')


def _entry_family(entry: dict[str, object], chain: str, forced: str | None) -> ChainFamily:
    declared = entry.get("family", forced)
    if declared is None:
        return family_of(chain)
    if not isinstance(declared, str):
        raise LabelError(f"family must be text, got {declared!r}")
    try:
        return parse_family(declared)
    except ValueError as exc:
        raise LabelError(str(exc)) from None


def describe(wallets: Sequence[Wallet]) -> str:
    """A short summary for logs: how many wallets of which role per exchange."""
    counts: dict[str, dict[str, int]] = {}
    for w in wallets:
        roles = counts.setdefault(w.exchange, {})
        roles[w.role.value] = roles.get(w.role.value, 0) + 1
    parts = []
    for exchange, roles in sorted(counts.items()):
        parts.append(f"{exchange} ({', '.join(f'{n} {role}' for role, n in sorted(roles.items()))})")
    return ", ".join(parts)
