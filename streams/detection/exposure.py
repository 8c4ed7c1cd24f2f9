"""Chain time as evidence: what a head credits to an (exchange, chain), how a gap is learned when a payout
ends it, and the budget arithmetic every threshold derives from.

A part of :class:`~streams.detection.detector.OutageDetector`, kept apart so the engine's module reads as
the decisions it makes; the methods work on the state of :mod:`.state` under the detector's policy.
"""

from __future__ import annotations

import math

from schemas.records import ChainHead, OutageState
from streams.detection.baseline import cautious_share, uncertain
from streams.detection.dispersion import collapse_llr, mixed_nats
from streams.detection.policy import DetectionPolicy
from streams.detection.state import ChainTrack, ExchangeTrack


class ExposureAccounting:
    """The detector's bookkeeping of exposure, gaps and warm-up (mixed into :class:`OutageDetector`)."""

    policy: DetectionPolicy
    _ln_rho: float

    # -- accounting --------------------------------------------------------------------------------
    def _credit(self, ex: ExchangeTrack, c: ChainTrack, head: ChainHead) -> bool:
        """Advance the chain's clock; True when an interval was credited (a decision is due)."""
        if head.number <= c.head_number:
            # redelivered, or a reorg's replacement of a credited height: no new chain time, but payouts
            # of a replacement block still start their gap here
            for w in reversed(c.recent):
                if w.u_at is not None:
                    break
                if w.block <= head.number:
                    w.u_at = c.u_total
            return False
        # consecutive: the next height, or (Solana skips slots) a block whose parent is the last credited one
        consecutive = c.head_number >= 0 and (
            head.number == c.head_number + 1 or (bool(c.head_hash) and head.parent_hash == c.head_hash)
        )
        prev_time = c.head_time
        c.head_number, c.head_time, c.head_hash = head.number, head.block_time, head.hash
        c.pending_ids.clear()
        credited = False
        if consecutive and prev_time is not None and head.block_time > prev_time:
            interval = head.block_time - prev_time
            cap = float(self.policy.max_block_credit_s)
            if c.interval_s is not None:
                cap = min(cap, self.policy.stall_intervals * c.interval_s)
            if interval <= cap:
                c.interval_s = interval if c.interval_s is None else 0.95 * c.interval_s + 0.05 * interval
            seconds = min(float(interval), cap)
            rate = c.rate.at(head.block_time)
            warm, disturbed = self._warm(c), self._disturbed(ex, c)
            c.u_total += rate * seconds
            if warm and not c.tainted and not disturbed:
                c.tail.swings.expect(rate * seconds)
            else:
                c.tail.swings.discard()  # an incident's counts, or a model still warming up, are not normal
            if c.pending and c.pending[-1][0] // 3600 == head.block_time // 3600:
                c.pending[-1][1] += seconds
            else:
                c.pending.append([float(head.block_time), float(seconds)])
            if c.tail.gaps > 0 and warm:
                # the rate test counts only the payouts the rate surely owes: an overestimated rate (an
                # unseen weekday, drift) must not read as a collapse
                sure = cautious_share(self._shape(c, head.block_time))
                expected = c.tail.base_beta() * rate * seconds * sure
                owed = expected * (1 - self.policy.degraded_ratio)
                known = c.rate.hours_seen_elsewhere(head.block_time) >= self.policy.degraded_min_hours
                if known and not disturbed:
                    # a mere suspicion does not stop the rate test; an unknown hour does
                    self._collapse_step(c, expected, 0.0)
                elif c.incident is not None and c.incident.state is OutageState.DEGRADED:
                    c.incident.recover = max(0.0, c.incident.recover - owed)
            credited = True
            if disturbed:
                c.tainted = True
        elif self._disturbed(ex, c):
            c.tainted = True
        for w in reversed(c.recent):  # payouts of this block start their gap after its interval
            if w.u_at is not None:
                break
            if w.block <= head.number:
                w.u_at = c.u_total
        if ex.snapshot.get(c.chain, 0.0) is None and ex.last_chain == c.chain:
            ex.snapshot[c.chain] = c.u_total
            ex.note_last()
        return credited

    def _end_gap(self, c: ChainTrack) -> None:
        """Learn from the gap that a payout just ended, unless an incident touched it."""
        last = c.last
        if last is not None and last.u_at is not None and not c.tainted:
            if c.warm and c.head_time is not None:
                c.check.add(c.tail.survival_log(c.u_total - last.u_at, self._shape(c, c.head_time)))
            c.tail.add_gap(c.u_total - last.u_at)
        if not c.tainted:
            for t, seconds in c.pending:
                c.rate.add(int(t), 0.0, seconds)
                c.exposure_s += seconds
            if c.pending_events and last is not None:
                c.rate.add(last.time, c.pending_events, 0)
        if c.tainted:
            c.tail.swings.discard()
        else:  # like the rate, the swings learn only from completed gaps: a silence never reads as a swing
            c.tail.swings.close_if_full(c.tail.beta)
        c.pending = []
        c.pending_events = 0
        c.tainted = False

    def _collapse_step(self, c: ChainTrack, expected: float, paid: float) -> None:
        """Move the rate-collapse test on by ``expected`` payouts owed and ``paid`` made (gap-tail units).

        A chain whose rate is as steady as Poisson keeps the Poisson CUSUM (a running sum that stops at
        zero). One whose rate swings (:attr:`GapTail.swing_var` above 0) weighs the whole stretch since
        the test last left zero against a Poisson count at a log-normally swinging rate: a run of low counts
        is what a swing does, so it counts as a collapse only when even the swings cannot explain it."""
        v = c.tail.swing_var
        rho = self.policy.degraded_ratio
        if v <= 0.0:
            if expected:
                c.drop += expected * (1 - rho)
            if paid:
                c.drop = max(0.0, c.drop - paid * self._ln_rho)
            if c.drop == 0.0:
                c.reset_drop()
            return
        c.drop_m += expected
        c.drop_n += paid
        c.drop = collapse_llr(c.drop_m, c.drop_n, c.tail.log_var, rho)
        if c.drop <= 0.0:
            c.reset_drop()

    def _shape(self, c: ChainTrack, t: int) -> float:
        """How sure the rate at ``t`` is, as a Gamma shape: prior plus the withdrawals that back it."""
        return min(self.policy.rate_prior_shape + c.rate.support(t), self.policy.rate_max_shape)

    @staticmethod
    def _disturbed(ex: ExchangeTrack, c: ChainTrack) -> bool:
        """An open or degraded incident covers this chain: what happens now is not normal behaviour."""
        active = (OutageState.OPEN, OutageState.DEGRADED)
        return (c.incident is not None and c.incident.state in active) or (
            ex.incident is not None and ex.incident.state in active
        )

    def _warm(self, c: ChainTrack) -> bool:
        if not c.warm:
            c.warm = (
                c.withdrawals >= self.policy.warmup_withdrawals
                and c.exposure_s >= self.policy.warmup_exposure_s
                and c.rate.overall() > 0
            )
        return c.warm

    def _tests(self, ex: ExchangeTrack) -> int:
        warm = sum(1 for c in ex.chains.values() if c.warm)
        return 2 * warm + (1 if warm >= 2 else 0)

    def _threshold(self, gaps_per_budget: float, tests: int) -> float:
        """Evidence (nats) at which this test's false alarms use its share of the budget."""
        return math.log(max(gaps_per_budget, 1.0) * max(tests, 1) / self.policy.false_alarms_per_exchange)

    @staticmethod
    def _silences(ex: ExchangeTrack, warm: list[ChainTrack]) -> list[tuple[ChainTrack, float]]:
        """The warm chains that are evidence about the exchange as a whole, each with the withdrawals it
        was expected to make since the exchange's last payout (``u``). A chain already known to be down is
        not evidence about the others; the chain of the last payout has none until its head."""
        silent = []
        for c in warm:
            snap = ex.snapshot.get(c.chain)
            if snap is not None and (c.incident is None or c.incident.state is OutageState.SUSPECTED):
                silent.append((c, c.u_total - snap))
        return silent

    def _exchange_evidence(self, silent: list[tuple[ChainTrack, float]], t: int) -> tuple[float, float, float]:
        """The exchange-wide test's (evidence, the largest chain's share of it, expected withdrawals) at
        chain time ``t``, from :meth:`_silences`."""
        evidence = 0.0
        expected = 0.0
        largest = 0.0
        weighted = 0.0
        for c, u in silent:
            share = uncertain(c.tail.base_beta() * u, self._shape(c, t))
            evidence += share
            expected += u
            largest = max(largest, share)
            weighted += share * c.tail.swing_var
        if weighted <= 0.0:
            return evidence, largest, expected
        # the swings of an exchange's payout rate follow the market, so its chains share them: one factor,
        # with the variance its silent chains learned, weighted by what each contributes; the silence began
        # at a payout, so at a moment weighted by the rate (n = 1)
        log_var = math.log1p(weighted / evidence)
        return mixed_nats(evidence, 1.0, log_var), mixed_nats(largest, 1.0, log_var), expected

    @staticmethod
    def _rest_bound(silent: list[tuple[ChainTrack, float]]) -> float:
        """An upper bound of what :meth:`_decide_exchange` compares with ``exchange_wide_rest_nats``: the
        evidence of all chains but the one that shows the most.

        Why: every head decides every exchange on the partition, and most of the time the exchange paid out
        a moment ago, so the exact evidence (a rate, a Gamma shape and a logarithm per chain) ends in "not
        an exchange-wide silence". A chain's share, ``uncertain(b * u, shape)`` with ``b`` its base rate, is
        never more than ``b * u``, so the sum of those without the smallest bounds the sum of the shares
        without the largest; the shared swing can make evidence grow at most ``1 + variance`` times as fast
        as that sum (its slope at zero). When the bound is already below the threshold, so is the evidence,
        and the decision is the same (the caller keeps a relative margin of 1e-9 for rounding)."""
        if not silent:
            return 0.0
        shares = [c.tail.base_beta() * u for c, u in silent]
        # with swings the evidence grows at first up to 1 + variance times faster than the shares (the
        # silence began at a payout, when the rate was more likely high): the bound allows for that
        slope = 1.0 + max(c.tail.swing_var for c, _ in silent)
        return slope * (sum(shares) - min(shares))
