"""The halt scenario and its two controls, end to end on real parts.

anvil (mined block by block by the exchange player) → connector process → Kafka → Faust worker process →
outage topic + ClickHouse (embedded chdb, or Debian's ClickHouse server through clickhouse-driver).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.evm.rpc import JsonRpcSocket
from connectors.publisher import ensure_topics
from haltwatch.local import OutageWatcher, PipelineProcesses
from haltwatch.traffic import SCENARIOS, BlockPlayed, ExchangePlayer
from schemas.records import OutageState
from streams.store.backend import ClickHouseBackend, open_backend

EXCHANGE = "demo-exchange"


async def _tip(ws_url: str) -> int:
    async with JsonRpcSocket(ws_url) as rpc:
        return int(await rpc.call("eth_blockNumber"), 16)


def exchange_pipeline(kafka: str, anvil: str, run_dir: Path, prefix: str, seed: int,
                      clickhouse_url: str | None = None, observe_kafka: str | None = None,
                      clickhouse_cluster: str | None = None) -> tuple[ExchangePlayer, PipelineProcesses, OutageWatcher]:
    """One exchange on anvil, labelled for a pipeline under a fresh topic prefix, and a watcher of its outage
    topic (through ``observe_kafka`` when the pipeline's own address is not one a plain client can use)."""
    player = ExchangePlayer(anvil, seed=seed)
    asyncio.run(player.setup())
    run_dir.mkdir(parents=True)
    labels = run_dir / "labels.toml"
    player.write_labels(labels, EXCHANGE)
    pipeline = PipelineProcesses(run_dir, kafka, anvil, labels, f"{prefix}{int(time.time() * 1000)}",
                                 clickhouse_url=clickhouse_url, clickhouse_cluster=clickhouse_cluster)
    ensure_topics(observe_kafka or kafka, pipeline.topics, pipeline.partitions)
    return player, pipeline, OutageWatcher(observe_kafka or kafka, pipeline.topics)


def start_pipeline(pipeline: PipelineProcesses, anvil: str) -> None:
    """The worker first (until its API answers), then a connector from the next block on."""
    pipeline.start_worker()
    pipeline.wait_worker_ready()
    pipeline.start_connector(start_block=asyncio.run(_tip(anvil)) + 1)


def run_scenario(scenario: str, kafka: str, anvil: str, run_dir: Path, clickhouse_url: str | None,
                 on_started: Callable[[PipelineProcesses], None] | None = None):
    """Play a scenario through the whole pipeline; returns what was played, what was seen, the pipeline.

    ``on_started`` runs once worker and connector are up, before the first block is played (a browser
    test opens the status page there, to watch it change during the scenario)."""
    player, pipeline, watcher = exchange_pipeline(kafka, anvil, run_dir, f"t{scenario}", hash(scenario) % 1000,
                                                  clickhouse_url)
    try:
        start_pipeline(pipeline, anvil)
        if on_started is not None:
            on_started(pipeline)
        played = asyncio.run(player.play(SCENARIOS[scenario]))
        return player, played, watcher, pipeline
    except BaseException:
        watcher.close()
        pipeline.stop()
        raise


def wait_until_connector_published(pipeline: PipelineProcesses, last_block: int, timeout_s: float = 60) -> None:
    checkpoint = pipeline.run_dir / "checkpoint-ethereum.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipeline.check_alive()
        if checkpoint.exists() and f'"number":{last_block},' in checkpoint.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"connector did not publish block {last_block}: {checkpoint.read_text()}")


def stored_withdrawals(backend: ClickHouseBackend) -> set[str]:
    rows = backend.query(
        f"SELECT tx_hash FROM {backend.database}.transfers FINAL "
        "WHERE exchange = {ex:String} AND direction = 'withdrawal' AND removed = 0",
        {"ex": EXCHANGE},
    )
    return {r["tx_hash"] for r in rows}


def last_withdrawal_before(played: list[BlockPlayed], phase: str) -> BlockPlayed:
    first = next(i for i, b in enumerate(played) if b.phase == phase)
    return next(b for b in reversed(played[:first]) if b.withdrawals)


@pytest.mark.parametrize("store", ["chdb", "server"])
def test_halt_is_detected_once_with_the_right_start_and_resolves(store, kafka, anvil, run_dir, request):
    clickhouse_url = request.getfixturevalue("clickhouse_server") if store == "server" else None
    _player, played, watcher, pipeline = run_scenario("halt", kafka, anvil, run_dir, clickhouse_url)
    try:
        assert watcher.wait_for(lambda evs: any(e.state is OutageState.RESOLVED for e in evs), 90), (
            f"no resolved outage; events: {watcher.events}"
        )
        wait_until_connector_published(pipeline, played[-1].number)
        time.sleep(2)  # a late, spurious second outage would show up here
        events = list(watcher.events)
        assert watcher.invalid == []
        states = [e.state for e in events]
        # one incident: possibly suspected first, then open, then resolved; versions 1, 2, ...
        assert states in ([OutageState.OPEN, OutageState.RESOLVED],
                          [OutageState.SUSPECTED, OutageState.OPEN, OutageState.RESOLVED]), events
        assert [e.version for e in events] == list(range(1, len(events) + 1))
        assert len({e.outage_id for e in events}) == 1
        opened, resolved = events[-2], events[-1]
        assert opened.exchange == EXCHANGE and opened.scope == ["ethereum"]
        last = last_withdrawal_before(played, "halt")
        assert opened.started_at == last.block_time
        assert opened.last_withdrawal_tx in last.withdrawals
        halt_blocks = [b for b in played if b.phase == "halt"]
        assert halt_blocks[0].block_time < opened.detected_at <= halt_blocks[-1].block_time
        first_resume = next(b for b in played if b.phase == "resume" and b.withdrawals)
        assert resolved.resolved_at == first_resume.block_time

        api_rows = pipeline.api(f"/outages?exchange={EXCHANGE}")
        assert sorted((r["outage_id"], r["version"], r["state"]) for r in api_rows) == [
            (e.outage_id, e.version, e.state.value) for e in events
        ]
        assert {r["started_at"] for r in api_rows} == {last.block_time}
    finally:
        watcher.close()
        pipeline.stop()

    # Stopped worker: the store is closed, so embedded chdb can be opened here; the server is shared anyway.
    backend = open_backend(clickhouse_url, run_dir / "chdb")
    try:
        sent = {tx for b in played for tx in b.withdrawals}
        assert stored_withdrawals(backend) == sent
        rows = backend.query(
            f"SELECT state, toUnixTimestamp(started_at) AS s FROM {backend.database}.outage_events FINAL "
            "WHERE exchange = {ex:String} AND outage_id = {id:String} ORDER BY version",
            {"ex": EXCHANGE, "id": opened.outage_id},
        )
        assert rows == [{"state": e.state.value, "s": last.block_time} for e in events]
    finally:
        backend.close()


@pytest.mark.parametrize("scenario", ["stall", "normal"])
def test_controls_emit_no_outage(scenario, kafka, anvil, run_dir):
    _player, played, watcher, pipeline = run_scenario(scenario, kafka, anvil, run_dir, None)
    try:
        wait_until_connector_published(pipeline, played[-1].number)
        # The detector must have consumed the last block's head, so silence here is a decision, not a lag.
        last = played[-1].number
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _detector_reached(pipeline, last):
            time.sleep(0.5)
        assert _detector_reached(pipeline, last), pipeline.api("/detector")
        sent = {tx for b in played for tx in b.withdrawals}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _stored_via_worker(pipeline) < len(sent):
            time.sleep(0.5)
        time.sleep(2)
        assert watcher.events == []
        assert _stored_via_worker(pipeline) == len(sent)
        (state,) = pipeline.api("/detector")
        assert state["withdrawals_seen"] >= 50, "the detector was warm: silence was possible to see"
    finally:
        watcher.close()
        pipeline.stop()
    if scenario == "stall":
        gaps = [b.block_time - a.block_time for a, b in itertools.pairwise(played)]
        assert max(gaps) >= 100 * 12, "the scenario must contain a real stall of the chain"


def _detector_reached(pipeline: PipelineProcesses, block: int) -> bool:
    return any(s["head_number"] >= block for s in pipeline.api("/detector"))


def _stored_via_worker(pipeline: PipelineProcesses) -> int:
    rows = pipeline.api(f"/withdrawals/count?exchange={EXCHANGE}")
    return int(rows["count"])
