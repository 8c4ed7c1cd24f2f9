"""Spot hot-wallet rotations as they happen, from transfers the connector reads anyway.

A rotation looks like this on chain: one of an exchange's known wallets funds a fresh address, and that
address starts paying many distinct outside addresses small amounts, steadily, as hot wallets do. The watch
shows every transfer of every block to an :class:`~connectors.hot_wallets.evidence.EvidenceBook` and judges a
candidate whenever it paid someone and may have crossed the thresholds (at most once per steadiness window);
the first time every check passes it returns a :class:`LabelSuggestion` carrying the evidence. This is the
scoring ``haltwatch labels discover`` uses on a block range, so a wallet proposed live reads the same.

With the default :class:`~connectors.hot_wallets.evidence.HotWalletRule` a new hot wallet is proposed in
its third 10-minute window with payouts, or later if it has not paid 20 distinct outside addresses by then:
within 30 minutes of chain time after its first payout when it pays 20 users in that time. Candidates are
forgotten ``window_s`` of chain time after they were first seen unless proposed by then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from connectors.hot_wallets.evidence import EvidenceBook, HotWalletRule, Verdict
from connectors.labels import LabelRegistry
from schemas.records import LabelSuggestion


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
        rule: HotWalletRule | None = None,
    ) -> None:
        """``min_funding`` maps an asset ("native" or a token address) to the smallest funding that counts."""
        self.chain = chain
        self.window_s = window_s
        self.clock = clock
        self.book = EvidenceBook(chain, labels, min_funding, rule or HotWalletRule(min_recipients=min_recipients),
                                 max_candidates=max_candidates)

    def observe(
        self, block_time: int, tx_hash: str, asset: str, amount: int, sender: str, recipient: str
    ) -> LabelSuggestion | None:
        """Feed every transfer of a block (labelled or not); returns a suggestion when one is due."""
        payer = self.book.observe(block_time, tx_hash, asset, amount, sender, recipient)
        if payer is None:
            return None
        if block_time - payer.first_seen > self.window_s and not payer.proposed:
            del self.book.candidates[payer.address]
            return None
        if not self.book.due(payer):
            return None
        verdict = self.book.judge(payer)
        if not verdict.hot:
            return None
        payer.proposed = True
        return self.suggestion(verdict, block_time)

    def suggestion(self, verdict: Verdict, block_time: int) -> LabelSuggestion:
        e = verdict.evidence
        return LabelSuggestion(
            exchange=e.exchange, chain=self.chain, address=e.address, suggested_role="hot", funded_by=e.funded_by,
            funded_at=e.funded_at, funding_tx=e.funding_tx, distinct_recipients=verdict.recipients,
            payouts=e.payouts, detected_at=block_time, emitted_at=self.clock(), top_ups=e.top_ups,
            sweeps=verdict.sweeps, steadiness=round(verdict.steadiness, 3), evidence=verdict.summary(),
        )
