"""Is a chain moving, stalled, or are we blind to it? Wall-clock judgement, kept apart from outages.

Outage decisions never need this (they only advance on heads), but people need to be told why an
exchange shows no decision: a chain whose heads stopped is either *stalled* (the connector is connected
and the node reports nothing newer than what we published) or we have *no data* (no heartbeat from the
connector, the connector is disconnected, or the node is ahead of what reaches us).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.records import ChainHead, ChainState, ChainStatus, FeedHeartbeat
from streams.detection.clock import Clock


@dataclass(slots=True)
class _ChainView:
    head: ChainHead
    interval_s: float | None = None
    heartbeat: FeedHeartbeat | None = None
    state: ChainState = ChainState.OK


class ChainMonitor:
    def __init__(self, clock: Clock, min_silence_s: float = 60.0, intervals: float = 10.0) -> None:
        """A chain is silent after ``intervals`` typical block intervals, and never before ``min_silence_s``."""
        self.clock = clock
        self.min_silence_s = min_silence_s
        self.intervals = intervals
        self.chains: dict[str, _ChainView] = {}

    def on_head(self, head: ChainHead) -> list[ChainStatus]:
        view = self.chains.get(head.chain)
        if view is None:
            self.chains[head.chain] = _ChainView(head)
            return []
        if head.number <= view.head.number:
            return []
        gap = head.received_at - view.head.received_at
        if gap > 0 and head.number == view.head.number + 1:
            typical = view.interval_s
            view.interval_s = gap if typical is None else 0.9 * typical + 0.1 * min(gap, 10 * typical)
        view.head = head
        return self._set(view, ChainState.OK, "heads arriving")

    def on_heartbeat(self, beat: FeedHeartbeat) -> list[ChainStatus]:
        view = self.chains.get(beat.chain)
        if view is not None and (view.heartbeat is None or beat.sent_at >= view.heartbeat.sent_at):
            view.heartbeat = beat
        return []

    def silence_limit(self, view: _ChainView) -> float:
        typical = view.interval_s or 0.0
        return max(self.min_silence_s, self.intervals * typical)

    def on_tick(self) -> list[ChainStatus]:
        now = self.clock.now()
        out: list[ChainStatus] = []
        for view in self.chains.values():
            silent = now - view.head.received_at
            limit = self.silence_limit(view)
            if silent <= limit:
                continue
            beat = view.heartbeat
            if beat is None or now - beat.sent_at > limit:
                out += self._set(view, ChainState.NO_DATA, f"no block for {silent:.0f} s and no connector heartbeat")
            elif not beat.connected:
                out += self._set(view, ChainState.NO_DATA, f"connector disconnected from the node for {silent:.0f} s")
            elif beat.node_head_number > view.head.number:
                out += self._set(view, ChainState.NO_DATA,
                                 f"node is at block {beat.node_head_number}, published only {view.head.number}")
            else:
                out += self._set(view, ChainState.CHAIN_STALLED, f"node reports no new block for {silent:.0f} s")
        return out

    def _set(self, view: _ChainView, state: ChainState, reason: str) -> list[ChainStatus]:
        if view.state is state:
            return []
        view.state = state
        beat = view.heartbeat
        return [ChainStatus(
            chain=view.head.chain, state=state, last_number=view.head.number, last_block_time=view.head.block_time,
            last_received_at=view.head.received_at, node_head_number=beat.node_head_number if beat else None,
            reason=reason, emitted_at=self.clock.now(),
        )]
