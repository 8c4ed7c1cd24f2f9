"""Chain time as evidence: what a head credits to an (exchange, chain), how a gap is learned when a payout
ends it, and the budget arithmetic every threshold derives from.

A part of :class:`~streams.detection.detector.OutageDetector`, kept apart so the engine's module reads as
the decisions it makes; the methods work on the state of :mod:`.state` under the detector's policy.
"""

from __future__ import annotations

import math

from schemas.records import OutageState
from streams.detection.baseline import cautious_share, uncertain
from streams.detection.chain_clock import collapse_restart
from streams.detection.dispersion import collapse_llr, mixed_nats
from streams.detection.policy import DetectionPolicy
from streams.detection.state import ChainTrack, ExchangeTrack


class ExposureAccounting:
    """The detector's bookkeeping of exposure, gaps and warm-up (mixed into :class:`OutageDetector`)."""

    policy: DetectionPolicy
    _ln_rho: float

    # -- accounting --------------------------------------------------------------------------------
    def _rates(self, ex: ExchangeTrack, c: ChainTrack, t: int) -> tuple[float, float, bool]:
        """At chain time ``t``'s hour: expected withdrawals per second, the share of them the rate test
        counts as surely owed (0 while it does not run) and whether it counts them (else a degraded
        incident's recovery pays them back). ``rate_now`` and ``owed_now`` (payouts owed per second, gap-tail
        units) are kept on the track: they hold until its next payout or the next hour, which is what a
        catch-up and a due position rely on."""
        rate = c.rate.at(t)
        sure, counts = 0.0, False
        if c.tail.gaps > 0 and self._warm(c):
            # the rate test counts only the payouts the rate surely owes: an overestimated rate (an unseen
            # weekday, drift) must not read as a collapse
            sure = cautious_share(self._shape(c, t))
            known = c.rate.hours_seen_elsewhere(t) >= self.policy.degraded_min_hours
            counts = known and not self._disturbed(ex, c)  # a mere suspicion does not stop it; an unknown hour does
        c.rate_now = rate
        c.owed_now = c.tail.base_beta() * rate * sure if counts else 0.0
        return rate, sure, counts

    def _accrue(self, ex: ExchangeTrack, c: ChainTrack, seconds: float, t: int, one_head: bool) -> None:
        """Credit ``seconds`` of chain time in ``t``'s hour: the gap's expected withdrawals, the exposure to
        learn when it ends, the swings' window and the rate-collapse test.

        ``one_head``: the seconds of one head, credited at the rates of that moment. Else a catch-up over
        several heads of one hour (:mod:`.chain_clock`), at the rates the track was last scheduled with: they
        hold until its next payout or the next hour, and no incident touches it (it would be visited at every
        head)."""
        owed = 0.0
        if one_head:
            warm = self._warm(c)
            rate, sure, counts = self._rates(ex, c, t)
            if c.tail.gaps > 0 and warm:
                owed = c.tail.base_beta() * rate * seconds * sure
        else:
            warm, rate = c.warm, c.rate_now
            owed = c.owed_now * seconds
            counts = owed > 0.0
        disturbed = self._disturbed(ex, c)
        c.u_total += rate * seconds
        if warm and not c.tainted and not disturbed:
            c.tail.swings.expect(rate * seconds)
        else:
            c.tail.swings.discard()  # an incident's counts, or a model still warming up, are not normal
        pending = c.pending
        if pending and pending[-1][0] // 3600 == t // 3600:
            pending[-1][1] += seconds
        else:
            pending.append([float(t), float(seconds)])
        if owed:
            if counts:
                c.owed_total += owed
                if one_head or c.tail.swing_var <= 0.0:
                    self._collapse_step(c, owed, 0.0)
                else:
                    self._collapse_span(c, owed)
            elif c.incident is not None and c.incident.state is OutageState.DEGRADED:
                c.incident.recover = max(0.0, c.incident.recover - owed * (1 - self.policy.degraded_ratio))
        if disturbed:
            c.tainted = True

    def _collapse_span(self, c: ChainTrack, expected: float) -> None:
        """The swinging rate-collapse test over a catch-up of several heads (:func:`.chain_clock.collapse_restart`)."""
        m, n, value = collapse_restart(c.drop_m, c.drop_m + expected, c.drop_n, c.tail.log_var,
                                       self.policy.degraded_ratio)
        if value <= 0.0:
            c.reset_drop()
            return
        if n != c.drop_n:
            c.drop_payouts = 0  # it restarted inside the catch-up
        c.drop_m, c.drop_n, c.drop = m, n, value

    def _gap_starts(self, ex: ExchangeTrack, c: ChainTrack, number: int) -> None:
        """At the head of block ``number``: the payouts of blocks up to it start their gap here, and so does the
        exchange-wide silence if its last payout was on this chain."""
        for w in reversed(c.recent):
            if w.u_at is not None:
                break
            if w.block <= number:
                w.u_at = c.u_total
        if ex.last_chain == c.chain and ex.snapshot.get(c.chain, 0.0) is None:
            ex.snapshot[c.chain] = c.u_total
            ex.note_last()

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
                silent.append((c, c.u_now() - snap))
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
