"""Spot hot-wallet rotations as they happen, from transfers the connector reads anyway.

A rotation looks like this on chain: one of an exchange's known wallets funds a fresh address, and that
address starts paying many distinct outside addresses, as hot wallets do. Ordinary users withdrawing
from the exchange are funded by it too, so only fundings of at least ``min_funding`` (in the asset's raw
units, per asset) count, and only an address that then pays ``min_recipients`` distinct outsiders within
``window_s`` of chain time is suggested. Memory is bounded: at most ``max_candidates`` addresses are
watched, the oldest fundings forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.labels import LabelRegistry
from schemas.records import LabelSuggestion


@dataclass(slots=True)
class _Candidate:
    exchange: str
    funded_by: str
    funded_at: int
    funding_tx: str
    recipients: set[str] = field(default_factory=set)
    payouts: int = 0
    suggested: bool = False


class RotationWatch:
    def __init__(
        self,
        chain: str,
        labels: Callable[[], LabelRegistry],
        min_funding: dict[str, int],
        min_recipients: int = 20,
        window_s: int = 3 * 86_400,
        max_candidates: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``min_funding`` maps an asset ("native" or a token address) to the smallest funding that counts."""
        self.chain = chain
        self.labels = labels
        self.min_funding = min_funding
        self.min_recipients = min_recipients
        self.window_s = window_s
        self.max_candidates = max_candidates
        self.clock = clock
        self.candidates: OrderedDict[str, _Candidate] = OrderedDict()

    def observe(
        self, block_time: int, tx_hash: str, asset: str, amount: int, sender: str, recipient: str
    ) -> LabelSuggestion | None:
        """Feed every transfer of a block (labelled or not); returns a suggestion when one is due."""
        registry = self.labels()
        candidate = self.candidates.get(sender)
        if candidate is not None:
            if block_time - candidate.funded_at > self.window_s:
                del self.candidates[sender]
            elif registry.lookup(self.chain, recipient) is None and recipient != candidate.funded_by:
                candidate.payouts += 1
                if len(candidate.recipients) < self.min_recipients:
                    candidate.recipients.add(recipient)
                if not candidate.suggested and len(candidate.recipients) >= self.min_recipients:
                    candidate.suggested = True
                    return self._suggest(sender, candidate, block_time)
            return None
        threshold = self.min_funding.get(asset)
        if threshold is None or amount < threshold:
            return None
        source = registry.lookup(self.chain, sender)
        if source is None or registry.lookup(self.chain, recipient) is not None or recipient in self.candidates:
            return None
        self.candidates[recipient] = _Candidate(source.exchange, sender, block_time, tx_hash)
        while len(self.candidates) > self.max_candidates:
            self.candidates.popitem(last=False)
        return None

    def _suggest(self, address: str, c: _Candidate, block_time: int) -> LabelSuggestion:
        return LabelSuggestion(
            exchange=c.exchange, chain=self.chain, address=address, suggested_role="hot", funded_by=c.funded_by,
            funded_at=c.funded_at, funding_tx=c.funding_tx, distinct_recipients=len(c.recipients),
            payouts=c.payouts, detected_at=block_time, emitted_at=self.clock(),
        )
