"""``haltwatch demo``: an exchange halt played on a local chain, detected live, then queried."""

from __future__ import annotations

import asyncio
import tempfile
import threading
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
        print(f"live status page: http://127.0.0.1:{pipeline.web_port}/ui  (metrics /metrics, health /health/ready)")

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
            elif event.state is OutageState.SUSPECTED:
                print(
                    f"\n>>> SUSPECTED    {event.exchange} on {','.join(event.scope)}: no withdrawal since "
                    f"{_t(event.started_at)}, {event.expected_count:.1f} expected; not yet conclusive"
                )
            elif event.state is OutageState.DEGRADED:
                print(f"\n>>> DEGRADED     {event.exchange} on {','.join(event.scope)}: {event.reason}")
            else:
                print(
                    f"\n>>> OUTAGE {event.state.upper()}  {event.exchange}: payouts resumed at "
                    f"{_t(event.resolved_at)}; outage lasted {event.duration_s} s of chain time"
                )

        watcher = OutageWatcher(KAFKA, pipeline.topics, on_event)
        phase_seen: set[str] = set()
        mined_at: dict[int, float] = {}  # block time -> wall time the block was mined
        queryable_at: dict[str, float] = {}
        stop_polling = threading.Event()

        def poll_store() -> None:
            """Note when each outage row first becomes visible to a ClickHouse query."""
            while not stop_polling.is_set():
                try:
                    rows = pipeline.api(f"/outages?exchange={EXCHANGE}") if pipeline else []
                except OSError:
                    rows = []
                now = time.time()
                for row in rows:
                    queryable_at.setdefault(f"{row['outage_id']}:{row['version']}", now)
                stop_polling.wait(0.05)

        poller = threading.Thread(target=poll_store, daemon=True)
        poller.start()

        def on_block(block: BlockPlayed) -> None:
            if block.phase not in phase_seen:
                phase_seen.add(block.phase)
                halt_started[block.phase] = block.wall_time
                print(f"\n--- phase {block.phase!r} from block {block.number} (chain time {_t(block.block_time)})")
            mined_at[block.block_time] = block.wall_time
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
        stop_polling.set()
        poller.join()
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
        opened = [r for r in rows if r["state"] == "open"]
        if "halt" in halt_started and opened:
            row = opened[0]
            first_halt_time = min(t for t, w in mined_at.items() if w >= halt_started["halt"])
            deciding_block_mined = mined_at.get(row["detected_at"], float("nan"))
            visible = queryable_at.get(f"{row['outage_id']}:{row['version']}", float("nan"))
            print(
                "\ntiming of this run:\n"
                f"  chain time from the first block of the halt to the deciding block: "
                f"{row['detected_at'] - first_halt_time} s ({row['detected_at'] - row['started_at']} s after the "
                "last withdrawal)\n"
                f"  wall time from the deciding block being mined to the outage row being queryable in ClickHouse: "
                f"{visible - deciding_block_mined:.3f} s\n"
                f"  wall time from the first block of the halt being mined to the row being queryable: "
                f"{visible - halt_started['halt']:.3f} s (chain time runs {player.block_time_s} s per "
                f"{player.wall_per_block_s} s of wall time in this demo)"
            )
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
