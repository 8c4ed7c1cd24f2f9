"""``haltwatch demo``: an exchange halt played on a local chain, detected live, then queried."""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from connectors.publisher import ensure_topics
from haltwatch.local import OutageWatcher, PipelineProcesses, infra
from haltwatch.traffic import SCENARIOS, BlockPlayed, ExchangePlayer
from schemas.records import OutageEvent, OutageState

KAFKA = "127.0.0.1:9092"
ANVIL_WS = "ws://127.0.0.1:8545"
EXCHANGE = "demo-exchange"


def _t(ts: int | float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_demo(scenario: str, keep_running: bool = False) -> int:
    if scenario not in SCENARIOS:
        print(f"unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}")
        return 2
    print("starting Kafka (KRaft) and anvil (no automatic mining: the player mines every block)...")
    infra("kafka", "start")
    infra("anvil", "start", {"ANVIL_ARGS": "--no-mining"})
    run_dir = Path(tempfile.mkdtemp(prefix="haltwatch-demo-"))
    prefix = f"demo{int(time.time())}"
    pipeline: PipelineProcesses | None = None
    watcher: OutageWatcher | None = None
    try:
        player = ExchangePlayer(ANVIL_WS)
        asyncio.run(player.setup())
        labels = run_dir / "labels.toml"
        player.write_labels(labels, EXCHANGE)
        print(f"exchange {EXCHANGE!r}: hot wallet {player.hot}, deposit {player.deposit}, cold {player.cold}")
        pipeline = PipelineProcesses(run_dir, KAFKA, ANVIL_WS, labels, prefix)
        ensure_topics(KAFKA, pipeline.topics, pipeline.partitions)
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        start_block = int(asyncio.run(_block_number())) + 1
        pipeline.start_connector(start_block=start_block)
        print(f"worker and connector running (logs in {run_dir}); playing scenario {scenario!r}")

        last_withdrawal: dict[str, int] = {}
        halt_started: dict[str, float] = {}
        seen_open: dict[str, float] = {}

        def on_event(event: OutageEvent) -> None:
            if event.state is OutageState.OPEN:
                seen_open[event.outage_id] = time.time()
                print(
                    f"\n>>> OUTAGE OPEN  {event.exchange} on {','.join(event.scope)}: no withdrawal since "
                    f"{_t(event.started_at)} (last tx {event.last_withdrawal_tx}); detected at chain time "
                    f"{_t(event.detected_at)}, expected {event.expected_count:.1f} withdrawals in the gap, "
                    f"confidence {event.confidence:.6f}"
                )
            else:
                print(
                    f"\n>>> OUTAGE {event.state.upper()}  {event.exchange}: payouts resumed at "
                    f"{_t(event.resolved_at)}; outage lasted {event.duration_s} s of chain time"
                )

        watcher = OutageWatcher(KAFKA, pipeline.topics, on_event)
        phase_seen: set[str] = set()

        def on_block(block: BlockPlayed) -> None:
            if block.phase not in phase_seen:
                phase_seen.add(block.phase)
                halt_started[block.phase] = block.wall_time
                print(f"\n--- phase {block.phase!r} from block {block.number} (chain time {_t(block.block_time)})")
            if block.withdrawals:
                last_withdrawal["time"] = block.block_time
            print("W" if block.withdrawals else ".", end="", flush=True)

        asyncio.run(player.play(SCENARIOS[scenario], on_block))
        print()
        if scenario == "halt":
            resolved = watcher.wait_for(lambda evs: any(e.state is OutageState.RESOLVED for e in evs), 60)
            if not resolved:
                print("the outage did not resolve within 60 s: see the worker log")
        else:
            time.sleep(5)
        rows = pipeline.api(f"/outages?exchange={EXCHANGE}")
        print(f"\nrows in ClickHouse (embedded chdb at {run_dir / 'chdb'}), table haltwatch.outage_events:")
        for row in rows:
            print(
                f"  {row['state']:<9} id={row['outage_id']} v{row['version']} started={_t(row['started_at'])} "
                f"detected={_t(row['detected_at'])} resolved={_t(row['resolved_at'])} "
                f"gap={row['observed_gap_s']} s confidence={row['confidence']:.6f}"
            )
        if not rows:
            print("  (none)")
        if "halt" in halt_started and seen_open:
            print(f"\nhalt began (wall clock) {time.strftime('%H:%M:%S', time.localtime(halt_started['halt']))}; "
                  f"outage event seen {min(seen_open.values()) - halt_started['halt']:.1f} s later")
        print(
            "\nquery them yourself (after the worker stops, embedded chdb is free to open):\n"
            f"  haltwatch outages --chdb-path {run_dir / 'chdb'}\n"
            "  or SQL: SELECT exchange, state, started_at, resolved_at FROM haltwatch.outage_events FINAL"
        )
        return 0 if (scenario != "halt" or rows) else 1
    finally:
        if watcher:
            watcher.close()
        if pipeline:
            pipeline.stop()
        if not keep_running:
            infra("anvil", "stop")
            infra("kafka", "stop")
        print(f"stopped; run folder kept at {run_dir}")


async def _block_number() -> int:
    from connectors.evm.rpc import JsonRpcSocket

    async with JsonRpcSocket(ANVIL_WS) as rpc:
        return int(await rpc.call("eth_blockNumber"), 16)
