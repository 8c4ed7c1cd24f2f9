"""A simulated exchange and its neighbours, as transfers per block: what hot-wallet discovery is measured on.

The exchange keeps a **cold wallet** (the only wallet its label file knows) that tops up two **hot wallets**;
hundreds of one-off **deposit addresses** are swept into the hot wallets; the hot wallets pay thousands of
users small amounts at a steady rate and send their surplus back to the cold wallet now and then. Around it,
the decoys a discovery must not propose: a **DEX router** (funded once by the cold wallet, then swapping with
hundreds of users: each pays it and is paid back), a **market maker** (funded twice by the cold wallet, paying
five counterparties large amounts) and a **payroll wallet** (funded once, paying fifteen people in two
bursts). With ``rotation_at``, the first hot wallet stops paying at that block and a **new hot wallet**,
funded by the cold wallet just before, takes its payouts over.

Amounts are in units of ``funding``, the smallest transfer from an exchange wallet that makes a candidate
(a top-up is 10 of them, a payout a few thousandths), so the same script fits every chain's decimals.
Addresses are names (``hot-1``, ``user-17``); :func:`address_for` turns them into valid addresses per family.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from connectors.addresses import b58check_encode, b58encode, segwit_encode


@dataclass(frozen=True, slots=True)
class Move:
    sender: str
    recipient: str
    amount: int


@dataclass(slots=True)
class ExchangeSim:
    """The blocks (each a list of moves) and who is who."""

    blocks: list[list[Move]]
    block_time_s: int
    hot: set[str]
    decoys: set[str]
    cold: str = "cold"
    rotated_out: str | None = None
    rotated_in: str | None = None
    rotation_block: int | None = None
    payouts: int = 0
    deposits: int = 0
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def first_payout_of_new_hot(self) -> int | None:
        """Block index of the new hot wallet's first payout (None without a rotation)."""
        for i, moves in enumerate(self.blocks):
            if any(m.sender == self.rotated_in and m.recipient.startswith("user-") for m in moves):
                return i
        return None


def simulate(funding: int, blocks: int = 1_500, block_time_s: int = 12, deposits: int = 300,
             payouts_per_block: float = 2.0, rotation_at: int | None = None, seed: int = 11) -> ExchangeSim:
    """The script: ``blocks`` blocks of ``block_time_s`` seconds (1,500 blocks of 12 s are 5 hours of chain time)."""
    rng = random.Random(seed)
    out: list[list[Move]] = [[] for _ in range(blocks)]
    hot = ["hot-1", "hot-2"]
    sim = ExchangeSim(out, block_time_s, set(hot), {"router", "market-maker", "payroll"})

    def units(low: float, high: float) -> int:
        return max(1, int(funding * rng.uniform(low, high)))

    per_hour = 3600 // block_time_s
    for b in range(0, blocks, per_hour * 3 // 4):  # top-ups every 45 minutes, staggered
        out[b].append(Move("cold", "hot-1", funding * 10))
        out[min(b + per_hour // 3, blocks - 1)].append(Move("cold", "hot-2", funding * 10))
    if rotation_at is not None:
        sim.rotated_out, sim.rotated_in, sim.rotation_block = "hot-1", "hot-3", rotation_at
        sim.hot.add("hot-3")
        out[max(rotation_at - 5, 0)].append(Move("cold", "hot-3", funding * 10))
    for d in range(deposits):  # each deposit address sweeps once (a tenth twice) into a hot wallet
        target = hot[d % 2]
        for _ in range(2 if d % 10 == 0 else 1):
            out[rng.randrange(blocks)].append(Move(f"deposit-{d}", target, units(0.005, 0.2)))
            sim.deposits += 1
    user = 0
    for b in range(blocks):
        for _ in range(_poisson(rng, payouts_per_block)):
            payer = hot[0] if rng.random() < 0.6 else hot[1]
            if rotation_at is not None and payer == "hot-1" and b >= rotation_at:
                payer = "hot-3"
            repeat = user > 0 and rng.random() < 0.1  # some users withdraw again
            to = f"user-{rng.randrange(user)}" if repeat else f"user-{user}"
            user += 0 if repeat else 1
            out[b].append(Move(payer, to, units(0.001, 0.05)))
            sim.payouts += 1
        if b % per_hour == per_hour // 2:
            out[b].append(Move(hot[b % 2], "cold", funding * 5))  # surplus back to cold storage
    _decoys(rng, out, funding, per_hour, units)
    sim.roles = {**{h: "hot" for h in sim.hot}, **{d: "decoy" for d in sim.decoys}, "cold": "cold"}
    return sim


def _decoys(rng: random.Random, out: list[list[Move]], funding: int, per_hour: int, units: object) -> None:
    blocks = len(out)
    out[3].append(Move("cold", "router", funding * 20))  # the exchange rebalancing through a DEX
    for b in range(5, blocks, 2):  # a swap every other block: each trader pays the router and is paid back
        trader = f"trader-{rng.randrange(400)}"
        out[b].append(Move(trader, "router", max(1, int(funding * rng.uniform(0.01, 0.5)))))
        out[b].append(Move("router", trader, max(1, int(funding * rng.uniform(0.01, 0.5)))))
    for b in (10, blocks // 2):
        out[b].append(Move("cold", "market-maker", funding * 20))
    for b in range(20, blocks, per_hour // 2):
        out[b].append(Move("market-maker", f"desk-{rng.randrange(5)}", funding * 2))
    out[30].append(Move("cold", "payroll", funding * 3))
    for burst in (40, blocks // 2 + 40):
        for person in range(15):
            out[min(burst + person // 5, blocks - 1)].append(Move("payroll", f"employee-{person}",
                                                                  max(1, funding // 10)))


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, k, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > threshold:
        k += 1
        product *= rng.random()
    return k


def address_for(family: str, name: str) -> str:
    """A valid, deterministic address of ``family`` for a script name (the same name, the same address)."""
    digest = hashlib.sha256(f"exchange-sim:{name}".encode()).digest()
    if family == "evm":
        return "0x" + digest[:20].hex()
    if family == "solana":
        return b58encode(digest)
    if family == "bitcoin":
        return segwit_encode("bc", 0, digest[:20])
    if family == "tron":
        return b58check_encode(b"\x41" + digest[:20])
    raise ValueError(f"unknown family {family!r}")


def label_file(family: str, chain: str, exchange: str = "simex") -> str:
    """The label file a user starts from: only the exchange's cold wallet."""
    return (f'[[wallet]]\nexchange = "{exchange}"\nchain = "{chain}"\naddress = "{address_for(family, "cold")}"\n'
            f'role = "cold"\nsource = "exchange-sim: the cold wallet"\n')
