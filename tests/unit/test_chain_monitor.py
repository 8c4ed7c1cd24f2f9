"""Stalled chain or lost feed: told apart on the wall clock with the connector's heartbeats."""

from schemas import ChainHead, ChainState, FeedHeartbeat
from streams.detection import ChainMonitor, ManualClock


def head(n: int, received: float) -> ChainHead:
    return ChainHead("ethereum", n, f"0x{n}", f"0x{n - 1}", 1_700_000_000 + 12 * n, received)


def steady(monitor: ChainMonitor, clock: ManualClock, blocks: int = 20) -> None:
    for n in range(1, blocks + 1):
        clock.set(12.0 * n)
        monitor.on_head(head(n, clock.now()))


def beat(clock: ManualClock, node: int, connected: bool = True) -> FeedHeartbeat:
    return FeedHeartbeat("ethereum", node, 20, connected, clock.now())


def test_quiet_while_blocks_arrive_on_time():
    clock = ManualClock()
    monitor = ChainMonitor(clock)
    steady(monitor, clock)
    clock.advance(60)
    assert monitor.on_tick() == []


def test_node_alive_without_new_blocks_is_a_stalled_chain():
    clock = ManualClock()
    monitor = ChainMonitor(clock)
    steady(monitor, clock)
    clock.advance(200)
    monitor.on_heartbeat(beat(clock, node=20))
    (status,) = monitor.on_tick()
    assert (status.state, status.last_number, status.node_head_number) == (ChainState.CHAIN_STALLED, 20, 20)
    assert monitor.on_tick() == [], "reported once per change"
    clock.advance(12)
    (back,) = monitor.on_head(head(21, clock.now()))
    assert back.state is ChainState.OK


def test_no_heartbeat_or_a_node_ahead_of_us_is_no_data():
    clock = ManualClock()
    monitor = ChainMonitor(clock)
    steady(monitor, clock)
    clock.advance(200)
    (status,) = monitor.on_tick()
    assert status.state is ChainState.NO_DATA and "no connector heartbeat" in status.reason
    other = ChainMonitor(clock)
    steady(other, clock)
    clock.advance(200)
    other.on_heartbeat(beat(clock, node=35))
    (status,) = other.on_tick()
    assert status.state is ChainState.NO_DATA and "node is at block 35" in status.reason


def test_disconnected_connector_is_no_data():
    clock = ManualClock()
    monitor = ChainMonitor(clock)
    steady(monitor, clock)
    clock.advance(200)
    monitor.on_heartbeat(beat(clock, node=20, connected=False))
    (status,) = monitor.on_tick()
    assert status.state is ChainState.NO_DATA and "disconnected" in status.reason


def test_silence_limit_follows_the_chains_block_interval():
    clock = ManualClock()
    monitor = ChainMonitor(clock, min_silence_s=1.0)
    steady(monitor, clock)  # 12 s blocks: silent after ~120 s
    clock.advance(100)
    assert monitor.on_tick() == []
    clock.advance(30)
    assert [s.state for s in monitor.on_tick()] == [ChainState.NO_DATA]
