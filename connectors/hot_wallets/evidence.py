"""Tell an exchange's hot wallets apart from everything else by how they move money.

Both ``haltwatch labels discover`` (a block range, read once) and the connector's live rotation watch show
every transfer of every block to an :class:`EvidenceBook`, and both judge what it gathered with the same
:class:`HotWalletRule`, so a wallet proposed live carries the same evidence a discovery run would print.

A hot wallet is where an exchange pays its users from. What gives it away on chain:

- it is **linked to the exchange**: an exchange wallet we know funds it (a top-up), it pays into one (surplus
  sent to cold storage), or it is itself a known wallet labelled otherwise (a reserve list's "cold" wallet that
  in fact pays users);
- it **receives sweeps**: many one-off addresses (users' deposit addresses) each send it funds and nothing else;
- it **pays many distinct outside addresses**, each a small part of what it receives, **at a steady rate**:
  in most short windows of chain time since its first payout, not in one burst.

The decoys this rules out: a DEX router pays thousands of addresses steadily, but the addresses it pays are
the ones that paid it (a swap is a round trip), and nothing of the exchange's funds it; a market maker's or an
OTC desk's wallet, funded by the exchange, pays a few counterparties large amounts; a payroll wallet pays the
same few people in bursts. Only addresses linked to the exchange are watched at all (at most
``max_candidates``, least recently active forgotten first), so memory stays bounded on a busy chain.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median_low
from typing import Any

from connectors.labels import LabelRegistry, Role, Wallet

SET_CAP = 2_048
"""Counterparties remembered per candidate (senders, recipients): enough to judge; counts saturate here."""
AMOUNT_SAMPLE = 257
"""Payout amounts kept per candidate to take their median."""
MAX_SWEEP_SENDS = 3
"""A deposit address sends to its hot wallet at most this many times (and to nobody else) to count as a sweep."""


@dataclass(frozen=True, slots=True)
class HotWalletRule:
    """The thresholds a candidate must meet, all of them, to be proposed as a hot wallet."""

    min_recipients: int = 20
    """Distinct outside addresses it paid (the exchange's own wallets and candidates do not count)."""
    window_s: int = 600
    """Chain-time window for steadiness: payouts are counted per window."""
    min_active_windows: int = 3
    """Windows with at least one payout."""
    min_steadiness: float = 0.25
    """Share of windows with a payout, from its first payout to the newest block seen."""
    max_round_trip: float = 0.2
    """Share of the addresses it paid that also paid it (a swap router's are nearly all)."""
    max_payout_share: float = 0.05
    """Median payout over all it received in that asset (not judged when it received nothing in the range)."""

    def __post_init__(self) -> None:
        if self.min_recipients < 1 or self.window_s < 1 or self.min_active_windows < 1:
            raise ValueError("min_recipients, window_s and min_active_windows must be at least 1")
        for name in ("min_steadiness", "max_round_trip", "max_payout_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


@dataclass(slots=True)
class WalletEvidence:
    """What one candidate did in the blocks seen; every count is of transfers unless it says addresses."""

    address: str
    exchange: str
    link: str
    """How it is tied to the exchange: ``labelled <role>``, ``funded by <wallet>`` or ``pays into <wallet>``."""
    first_seen: int
    funded_by: str = ""
    funded_at: int = 0
    funding_tx: str = ""
    top_ups: int = 0
    """Transfers in from the exchange's known wallets."""
    pays_exchange: int = 0
    """Transfers out to the exchange's known wallets."""
    change: int = 0
    """Bitcoin outputs back to itself: a paying wallet that reuses its address shows itself this way."""
    payouts: int = 0
    received: dict[str, int] = field(default_factory=dict)
    """Asset → amount received from anyone (raw units)."""
    senders: set[str] = field(default_factory=set)
    recipients: set[str] = field(default_factory=set)
    paid_assets: Counter[str] = field(default_factory=Counter)
    amounts: dict[str, list[int]] = field(default_factory=dict)
    windows: set[int] = field(default_factory=set)
    first_payout: int | None = None
    judged_window: int = -1
    proposed: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judged candidate: ``hot`` when every check passed; ``failed`` names the ones that did not."""

    evidence: WalletEvidence
    checks: dict[str, bool]
    recipients: int
    sweeps: int
    steadiness: float
    round_trip: float
    payout_share: float | None
    asset: str
    spanned: int
    """Windows from its first payout to the newest block seen."""
    window_s: int

    @property
    def hot(self) -> bool:
        return all(self.checks.values())

    @property
    def score(self) -> float:
        """Share of the checks passed (1.0 for a proposed wallet): how near a rejected one came."""
        return sum(self.checks.values()) / len(self.checks)

    @property
    def failed(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]

    def summary(self) -> str:
        """One line of evidence, as label files' ``source`` and suggestions carry it."""
        e = self.evidence
        share = "no inflow seen" if self.payout_share is None else f"median {self.payout_share:.2%} of inflow"
        more = "+" if self.recipients >= SET_CAP else ""
        parts = [
            e.link,
            f"{e.top_ups} top-ups from exchange wallets",
            f"{self.sweeps} sweeps from one-off addresses",
            f"{e.payouts} payouts of {self.asset} to {self.recipients}{more} distinct outside addresses ({share})",
            f"paying in {len(e.windows)} of {self.spanned} windows of {self.window_s // 60} min since its first payout "
            f"(steadiness {self.steadiness:.2f})",
            f"round trips {self.round_trip:.2f}",
        ]
        if e.pays_exchange:
            parts.append(f"{e.pays_exchange} transfers into exchange wallets")
        if e.change:
            parts.append(f"{e.change} change outputs to itself")
        return "; ".join(parts)


class EvidenceBook:
    """Gathers evidence from every transfer shown to it and judges candidates with a :class:`HotWalletRule`.

    ``min_funding`` maps an asset ("native" or a token) to the smallest transfer from (or to) an exchange
    wallet that makes its counterparty a candidate: ordinary users withdrawing are funded by the exchange too,
    just with less. Assets not in the map never make candidates (but still count as payouts).
    """

    def __init__(self, chain: str, labels: Callable[[], LabelRegistry], min_funding: dict[str, int],
                 rule: HotWalletRule | None = None, max_candidates: int = 10_000,
                 max_trails: int = 200_000) -> None:
        self.chain = chain
        self.labels = labels
        self.min_funding = min_funding
        self.rule = rule or HotWalletRule()
        self.max_candidates = max_candidates
        self.max_trails = max_trails
        self.candidates: OrderedDict[str, WalletEvidence] = OrderedDict()
        self.trails: OrderedDict[str, list[Any]] = OrderedDict()
        """Sender into a candidate → [that candidate, sends, sent elsewhere too]: tells deposit sweeps."""
        self.newest = 0
        """Newest block time seen: the end of every candidate's steadiness span."""

    # -- seeing transfers ----------------------------------------------------------------------------
    def observe(self, block_time: int, tx_hash: str, asset: str, amount: int, sender: str,
                recipient: str) -> WalletEvidence | None:
        """One transfer, labelled or not; returns the candidate that paid it when it may be due a verdict."""
        self.newest = max(self.newest, block_time)
        if sender == recipient:
            own = self.candidates.get(sender)
            if own is not None:
                own.change += 1
            return None
        registry = self.labels()
        self._trail(sender, recipient)
        source, target = registry.lookup(self.chain, sender), registry.lookup(self.chain, recipient)
        payer = self.candidates.get(sender) or self._known_candidate(source, sender, block_time)
        payee = self.candidates.get(recipient) or self._known_candidate(target, recipient, block_time)
        threshold = self.min_funding.get(asset)
        if threshold is not None and amount >= threshold:
            if payee is None and source is not None and target is None:
                payee = self._add(WalletEvidence(recipient, source.exchange, f"funded by {sender}", block_time))
            elif payer is None and target is not None and source is None:
                payer = self._add(WalletEvidence(sender, target.exchange, f"pays into {recipient}", block_time))
        if payee is not None:
            self._received(payee, source, block_time, tx_hash, asset, amount, sender)
        return None if payer is None else self._paid(payer, target, block_time, asset, amount, recipient)

    def _known_candidate(self, wallet: Wallet | None, address: str, block_time: int) -> WalletEvidence | None:
        """A known wallet not labelled hot is a candidate from its first transfer: it may pay users."""
        if wallet is None or wallet.role is Role.HOT:
            return None
        return self._add(WalletEvidence(address, wallet.exchange, f"labelled {wallet.role.value}", block_time))

    def _add(self, evidence: WalletEvidence) -> WalletEvidence:
        self.candidates[evidence.address] = evidence
        while len(self.candidates) > self.max_candidates:
            self.candidates.popitem(last=False)
        return evidence

    def _received(self, payee: WalletEvidence, wallet: Wallet | None, block_time: int, tx_hash: str, asset: str,
                  amount: int, sender: str) -> None:
        """``wallet``: the sender's label, if any."""
        self.candidates.move_to_end(payee.address)
        payee.received[asset] = payee.received.get(asset, 0) + amount
        if wallet is not None and wallet.exchange == payee.exchange:
            payee.top_ups += 1
            if not payee.funded_by:
                payee.funded_by, payee.funded_at, payee.funding_tx = sender, block_time, tx_hash
        elif sender not in self.candidates and len(payee.senders) < SET_CAP:
            payee.senders.add(sender)
            trail = self.trails.get(sender)
            if trail is None:
                self.trails[sender] = [payee.address, 1, False]
                while len(self.trails) > self.max_trails:
                    self.trails.popitem(last=False)

    def _trail(self, sender: str, recipient: str) -> None:
        trail = self.trails.get(sender)
        if trail is None:
            return
        if trail[0] == recipient:
            trail[1] += 1
        else:
            trail[2] = True

    def _paid(self, payer: WalletEvidence, wallet: Wallet | None, block_time: int, asset: str, amount: int,
              recipient: str) -> WalletEvidence | None:
        """``wallet``: the recipient's label, if any."""
        self.candidates.move_to_end(payer.address)
        if wallet is not None and wallet.exchange == payer.exchange:
            payer.pays_exchange += 1
            return None
        other = self.candidates.get(recipient)
        if other is not None and other.exchange == payer.exchange:
            return None  # one candidate topping up another: internal, not a payout
        payer.payouts += 1
        if len(payer.recipients) < SET_CAP:
            payer.recipients.add(recipient)
        payer.paid_assets[asset] += 1
        sample = payer.amounts.setdefault(asset, [])
        if len(sample) < AMOUNT_SAMPLE:
            sample.append(amount)
        payer.windows.add(block_time // self.rule.window_s)
        if payer.first_payout is None:
            payer.first_payout = block_time
        return payer

    # -- judging -------------------------------------------------------------------------------------
    def due(self, evidence: WalletEvidence) -> bool:
        """Worth a full verdict now: not yet proposed, enough breadth and windows, not judged in this window."""
        rule = self.rule
        window = self.newest // rule.window_s
        if (evidence.proposed or len(evidence.recipients) < rule.min_recipients
                or len(evidence.windows) < rule.min_active_windows or evidence.judged_window == window):
            return False
        evidence.judged_window = window
        return True

    def judge(self, evidence: WalletEvidence) -> Verdict:
        """Every check on what the book has seen of ``evidence`` up to the newest block."""
        rule = self.rule
        recipients = len(evidence.recipients)
        first = evidence.first_payout if evidence.first_payout is not None else self.newest
        spanned = self.newest // rule.window_s - first // rule.window_s + 1
        steadiness = len(evidence.windows) / spanned
        round_trip = len(evidence.recipients & evidence.senders) / recipients if recipients else 0.0
        asset = evidence.paid_assets.most_common(1)[0][0] if evidence.paid_assets else "native"
        inflow = evidence.received.get(asset, 0)
        sample = evidence.amounts.get(asset)
        payout_share = median_low(sample) / inflow if sample and inflow > 0 else None
        sweeps = sum(1 for s in evidence.senders if self._is_sweep(s, evidence))
        checks = {
            "linked": bool(evidence.link),
            "recipients": recipients >= rule.min_recipients,
            "active_windows": len(evidence.windows) >= rule.min_active_windows,
            "steadiness": steadiness >= rule.min_steadiness,
            "round_trip": round_trip <= rule.max_round_trip,
            "payout_share": payout_share is None or payout_share <= rule.max_payout_share,
        }
        return Verdict(evidence, checks, recipients, sweeps, steadiness, round_trip, payout_share, asset, spanned,
                       rule.window_s)

    def _is_sweep(self, sender: str, evidence: WalletEvidence) -> bool:
        trail = self.trails.get(sender)
        return (trail is not None and trail[0] == evidence.address and not trail[2] and trail[1] <= MAX_SWEEP_SENDS
                and sender not in evidence.recipients)

    def verdicts(self) -> list[Verdict]:
        """Every candidate that paid anyone, judged; hot ones first, then by how near they came."""
        judged = [self.judge(e) for e in self.candidates.values() if e.payouts]
        return sorted(judged, key=lambda v: (-v.score, -v.recipients, v.evidence.address))
