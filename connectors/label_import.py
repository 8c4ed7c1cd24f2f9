"""Build a curated label file from public label data sets: ``python -m connectors.label_import``.

Inputs (not shipped with haltwatch; see their SOURCE.txt for origin and licence):

- ``--etherscan DIR``: a checkout of brianleect/etherscan-labels' data (``DIR/etherscan/accounts/<label>.csv``
  with columns ``Address, Name Tag, Balance, Txn Count``, and ``cold-wallet.csv``);
- ``--defillama CSV`` (optional): DefiLlama's CEX address lists flattened to ``entity,chain,address,...``.
  They mix hot and cold reserve wallets, so they only corroborate an Etherscan entry, never make one.

Selection, per exchange: Etherscan accounts whose name tag is the exchange's own name, optionally
numbered (``Binance 14``) or ``<name>: Hot Wallet`` — not deposit funders, tokens, routers, contracts,
multisigs or deployers. A busy account (at least ``--min-txns`` transactions) is a hot wallet; the busiest
``--max-hot`` are kept. An account in Etherscan's cold-wallet list, or a numbered one holding a large balance
with few transactions, is a cold wallet: it is kept too, because a payout from the hot wallet to the
exchange's own cold wallet is internal, not a withdrawal. Every entry's ``source`` names the file, the name
tag and the figures it was chosen on.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from connectors.eip55 import to_checksum_address
from connectors.labels import Role


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """How one exchange appears in the data sets."""

    name: str
    etherscan_file: str
    tag: re.Pattern[str]
    defillama_entity: str


def _tag(name: str) -> re.Pattern[str]:
    """An exchange's own name tags: ``Name``, ``Name 14``, ``Name: Hot Wallet 3``, ``Name: C-Chain Hot Wallet``."""
    return re.compile(rf"(?:{name})(?: \d+|:? (?:C-Chain )?Hot Wallet(?: \d+)?)?")


EXCHANGES: tuple[ExchangeSpec, ...] = (
    ExchangeSpec("binance", "binance.csv", _tag("Binance"), "binance"),
    ExchangeSpec("okx", "okx.csv", _tag("OKX"), "okex"),
    ExchangeSpec("coinbase", "coinbase.csv", _tag("Coinbase"), "coinbase"),
    ExchangeSpec("kraken", "kraken.csv", _tag("Kraken"), "kraken"),
    ExchangeSpec("bybit", "bybit.csv", _tag("Bybit"), "bybit"),
    ExchangeSpec("kucoin", "kucoin.csv", _tag("Ku[Cc]oin"), "kucoin"),
    ExchangeSpec("bitfinex", "bitfinex.csv", _tag("Bitfinex"), "bitfinex"),
    ExchangeSpec("gate", "gate-io.csv", _tag(r"Gate\.io"), "gate-io"),
    ExchangeSpec("htx", "huobi.csv", _tag("Huobi"), "huobi"),
    ExchangeSpec("crypto-com", "crypto-com.csv", _tag(r"Crypto\.com"), "crypto-com"),
    ExchangeSpec("mexc", "mexc.csv", _tag(r"(?:MEXC|Mexc|mexc)(?:\.com)?"), "mexc"),
)
EXPLORERS = {"etherscan": ("ethereum", "Etherscan"), "bscscan": ("bsc", "BscScan"),
             "polygonscan": ("polygon", "PolygonScan"), "arbiscan": ("arbitrum", "Arbiscan"),
             "optimism": ("optimism", "Optimism Etherscan"), "avalanche": ("avalanche", "SnowTrace"),
             "ftmscan": ("fantom", "FTMScan")}
"""Explorer folder of the data set → (the chain name its label file is for, the explorer's name)."""
DEFILLAMA_CHAIN = {"avalanche": "avax"}
"""Where DefiLlama's chain name differs from ours."""
COLD_MIN_ETH = 10_000.0
COLD_MAX_TXNS = 20_000


@dataclass(frozen=True, slots=True)
class Account:
    """One row of an Etherscan label CSV."""

    address: str
    tag: str
    balance_eth: float
    txns: int
    file: str
    balance: str = ""
    """The balance as the explorer shows it (in that chain's coin)."""


@dataclass(frozen=True, slots=True)
class Pick:
    exchange: str
    account: Account
    role: Role
    why: str


def _number(text: str) -> float:
    match = re.match(r"[\d,.]+", text.strip())
    return float(match.group(0).replace(",", "")) if match else 0.0


def read_accounts(path: Path, shown_as: str) -> list[Account]:
    """Rows of one Etherscan label CSV; unreadable rows are skipped (the data set is scraped HTML)."""
    accounts = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            address = (row.get("Address") or "").strip().lower()
            if not re.fullmatch(r"0x[0-9a-f]{40}", address):
                continue
            balance = row.get("Balance") or ""
            eth = _number(balance) if balance.strip().endswith("ETH") else 0.0
            accounts.append(Account(address, (row.get("Name Tag") or "").strip(), eth,
                                    int(_number(row.get("Txn Count") or "0")), shown_as, balance.strip()))
    return accounts


def read_defillama(path: Path | None, chain: str = "ethereum") -> dict[str, set[str]]:
    """address → DefiLlama entities listing it (rows of ``chain`` only)."""
    found: dict[str, set[str]] = {}
    if path is None:
        return found
    wanted = DEFILLAMA_CHAIN.get(chain, chain)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("chain") == wanted:
                found.setdefault(row["address"].strip().lower(), set()).add(row["entity"])
    return found


def choose(spec: ExchangeSpec, accounts: Iterable[Account], cold_listed: set[str], min_txns: int,
           max_hot: int, max_cold: int) -> list[Pick]:
    """The exchange's hot wallets (busiest first) and its identifiable cold wallets (largest first)."""
    own: dict[str, Account] = {}
    for a in accounts:  # an address in two files (its exchange's and the cold list) counts once
        if spec.tag.fullmatch(a.tag):
            own.setdefault(a.address, a)
    cold = [
        Pick(spec.name, a, Role.COLD, "in Etherscan's cold-wallet list" if a.address in cold_listed else
             f"{a.balance_eth:,.0f} ETH held with only {a.txns:,} transactions")
        for a in own.values()
        if a.address in cold_listed or (a.balance_eth >= COLD_MIN_ETH and a.txns <= COLD_MAX_TXNS)
    ]
    cold_addresses = {p.account.address for p in cold}
    cold = sorted(cold, key=lambda p: -p.account.balance_eth)[:max_cold]
    busy = sorted(
        (a for a in own.values() if a.txns >= min_txns and a.address not in cold_addresses), key=lambda a: -a.txns
    )
    hot = [Pick(spec.name, a, Role.HOT, f"{a.txns:,} transactions") for a in busy[:max_hot]]
    return hot + cold


def source_text(pick: Pick, dataset: str, llama: dict[str, set[str]], llama_entity: str) -> str:
    a = pick.account
    held = f"{a.balance_eth:,.2f} ETH" if a.file.startswith("data/etherscan/") else (a.balance or "balance not shown")
    text = f"{dataset} {a.file}: name tag '{a.tag}', {a.txns:,} txns, {held}; {pick.role.value}: {pick.why}"
    if llama_entity in llama.get(a.address, set()):
        text += f"; also in DefiLlama's '{llama_entity}' CEX address list"
    return text


def render(picks: Sequence[Pick], header: str, dataset: str, llama: dict[str, set[str]],
           chain: str = "ethereum") -> str:
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    entity = {s.name: s.defillama_entity for s in EXCHANGES}
    for pick in picks:
        lines += [
            "",
            "[[wallet]]",
            f'exchange = "{pick.exchange}"',
            f'chain = "{chain}"',
            f'address = "{to_checksum_address(pick.account.address)}"',
            f'role = "{pick.role.value}"',
            'source = "{}"'.format(source_text(pick, dataset, llama, entity[pick.exchange]).replace('"', "'")),
        ]
    return "\n".join(lines) + "\n"


def dataset_name(etherscan_root: Path) -> str:
    """``brianleect/etherscan-labels@<commit>`` from the data's SOURCE.txt, if it says."""
    try:
        text = (etherscan_root / "SOURCE.txt").read_text()
    except OSError:
        return "etherscan-labels"
    match = re.search(r"Commit:\s*([0-9a-f]{7,40})", text)
    return f"brianleect/etherscan-labels@{match.group(1)[:7]}" if match else "etherscan-labels"


def build(etherscan_root: Path, defillama: Path | None, min_txns: int, max_hot: int,
          max_cold: int, explorer: str = "etherscan") -> tuple[str, list[str]]:
    """The TOML text and notes about exchanges the data did not cover.

    Etherscan's folder has a file per exchange and a cold-wallet list; the other explorers' folders are small
    and file exchanges under ``exchange.csv`` and others, so every file there is read."""
    chain, shown = EXPLORERS[explorer]
    accounts_dir = etherscan_root / explorer / "accounts"
    cold_file = accounts_dir / "cold-wallet.csv"
    cold_rows = read_accounts(cold_file, f"data/{explorer}/accounts/cold-wallet.csv") if cold_file.exists() else []
    cold_listed = {a.address for a in cold_rows}
    everything = [] if explorer == "etherscan" else [
        a for path in sorted(accounts_dir.glob("*.csv")) for a in read_accounts(path, f"data/{explorer}/accounts/"
                                                                                     f"{path.name}")]
    llama = read_defillama(defillama, chain)
    picks: list[Pick] = []
    notes: list[str] = []
    seen: set[str] = set()
    for spec in EXCHANGES:
        path = accounts_dir / spec.etherscan_file
        if explorer == "etherscan":
            rows = read_accounts(path, f"data/etherscan/accounts/{spec.etherscan_file}") if path.exists() else []
        else:
            rows = list(everything)
        rows += [a for a in cold_rows if spec.tag.fullmatch(a.tag)]
        picked = choose(spec, rows, cold_listed, min_txns, max_hot, max_cold)
        chosen = [p for p in picked if p.account.address not in seen]
        seen.update(p.account.address for p in chosen)
        if not any(p.role is Role.HOT for p in chosen):
            notes.append(f"{spec.name}: no hot wallet in the data (no {spec.etherscan_file} or no busy account)")
        picks += chosen
    title = "Ethereum" if chain == "ethereum" else f"{chain} (EVM)"
    header = (
        f"{title} hot and cold wallets of the largest exchanges, generated by\n"
        f"  python -m connectors.label_import --etherscan <etherscan-labels data> --defillama <csv>"
        f"{'' if explorer == 'etherscan' else f' --explorer {explorer}'} --out <this file>\n"
        f"from {dataset_name(etherscan_root)} ({shown} name tags, MIT; scraped 2023) and DefiLlama's CEX lists.\n"
        "Labels age: exchanges rotate hot wallets. Add or override entries in your own file loaded after this one\n"
        "(same exchange + address replaces the entry here, e.g. to change its role).\n"
        + "".join(f"Not covered: {n}\n" for n in notes)
    )
    return render(picks, header, dataset_name(etherscan_root), llama, chain), notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.label_import", description=__doc__.split("\n")[0])
    parser.add_argument("--etherscan", type=Path, required=True, help="etherscan-labels data folder")
    parser.add_argument("--defillama", type=Path, help="DefiLlama CEX addresses CSV (entity,chain,address,...)")
    parser.add_argument("--out", type=Path, required=True, help="TOML file to write")
    parser.add_argument("--explorer", choices=sorted(EXPLORERS), default="etherscan",
                        help="which explorer's labels (the chain follows: bscscan makes chain 'bsc', ...)")
    parser.add_argument("--min-txns", type=int, default=100_000, help="transactions for a wallet to count as hot")
    parser.add_argument("--max-hot", type=int, default=6, help="hot wallets kept per exchange, busiest first")
    parser.add_argument("--max-cold", type=int, default=3, help="cold wallets kept per exchange, largest first")
    args = parser.parse_args(argv)
    if not (args.etherscan / args.explorer / "accounts").is_dir():
        parser.error(f"{args.etherscan} has no {args.explorer}/accounts folder")
    text, notes = build(args.etherscan, args.defillama, args.min_txns, args.max_hot, args.max_cold, args.explorer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {text.count('[[wallet]]')} wallets to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
