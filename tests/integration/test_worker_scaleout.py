"""More than one worker in a consumer group: a worker joining or leaving mid-outage, and the load shared.

Every exchange's transfers go to one partition of the transfers topic (keyed by exchange) and every block's
head goes to every partition, so each worker decides the exchanges of the partitions it holds. When a worker
joins, partitions and the detector state in the changelog-backed table move to it; when it leaves, they move
back. Kafka is at-least-once, so a decision may be sent again around a move: it is then the same record (same
outage id, version and content; only the wall-clock ``emitted_at`` may differ). What must never happen is a
forgotten outage, a second incident, a new version for a state already reported, or a gap in versions.

The exchanges are played on one anvil chain by :class:`FleetPlayer`, each with its own hot wallet.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from connectors.publisher import ensure_topics
from haltwatch.local import OutageWatcher, PipelineProcesses
from haltwatch.traffic import FleetBlockPlayed, FleetPlayer, Phase
from schemas.codec import SchemaError, decode
from schemas.records import CorrelatedIncident, OutageEvent, OutageState, TransferEvent, events_of
from tests.integration.test_end_to_end import _tip, wait_until_connector_published

PARTITIONS = 4
REBALANCE_EXCHANGES = ["okx", "bitfinex", "kraken", "binance"]
"""Keyed to partitions 0, 1, 2 and 3 by Kafka's default partitioner (the test checks where they land)."""
SCALEOUT_EXCHANGES = ["okx", "binance", "kraken", "bybit", "coinbase", "bitfinex"]
SCALEOUT_HALTED = {"okx": "halt", "kraken": "late-halt"}


# -- start-up ----------------------------------------------------------------------------------------------------

def test_a_fresh_worker_holds_its_topics_and_state_table_from_its_first_assignment(kafka, tmp_path):
    """On a new deployment nothing exists yet: the worker creates its topics before Faust joins the group.

    A topic missing from the broker's metadata when the group forms is not assigned until the consumer's next
    metadata refresh (minutes): for the state table's changelog, every decision until then would be lost."""
    pipeline = PipelineProcesses(tmp_path / "run", kafka, "ws://127.0.0.1:1", tmp_path / "labels.toml",
                                 f"fresh{int(time.time() * 1000)}", partitions=PARTITIONS)
    try:
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        _wait_assignment(pipeline, members=1, timeout_s=60)
        everything = set(range(PARTITIONS))
        for topic in (pipeline.topics.transfers, pipeline.topics.heads, f"{pipeline.app_id}-detector-state-changelog"):
            (held,) = pipeline.group_assignment(topic)
            assert held == everything, f"{topic}: {held}"
        (held,) = pipeline.group_assignment(f"{pipeline.topics.prefix}.internal.correlation.v1")
        assert held == {0}
    finally:
        pipeline.stop()
    assert "not found in cluster metadata" not in (tmp_path / "run" / "worker.log").read_text()


# -- the rebalance ---------------------------------------------------------------------------------------------

def test_second_worker_joins_and_leaves_during_open_outages(kafka, anvil, run_dir):
    """Four exchanges on four partitions halt together; a second worker joins mid-outage, then leaves."""
    player = FleetPlayer(anvil, REBALANCE_EXCHANGES, seed=23, wall_per_block_s=0.02)
    asyncio.run(player.setup())
    run_dir.mkdir(parents=True)
    labels = run_dir / "labels.toml"
    player.write_labels(labels)
    pipeline = PipelineProcesses(run_dir, kafka, anvil, labels, f"rebalance{int(time.time() * 1000)}",
                                 partitions=PARTITIONS)
    ensure_topics(kafka, pipeline.topics, pipeline.partitions)
    watcher = OutageWatcher(kafka, pipeline.topics)
    everyone = list(REBALANCE_EXCHANGES)

    def plan(*phases: Phase) -> dict[str, list[Phase]]:
        return {exchange: list(phases) for exchange in everyone}

    try:
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        pipeline.start_connector(start_block=asyncio.run(_tip(anvil)) + 1)
        played = asyncio.run(player.play(plan(Phase("steady", 330, 1.0), Phase("halt", 40, 0.0))))
        assert watcher.wait_for(lambda evs: _opened(evs) == set(everyone), 120), _summary(watcher.events)
        opened = {e.exchange: e for e in watcher.events if e.state is OutageState.OPEN}
        assert _wait_assignment(pipeline, members=1, timeout_s=30) == [set(range(PARTITIONS))]

        pipeline.start_worker("worker2")
        pipeline.wait_worker_ready(name="worker2")
        shared = _wait_assignment(pipeline, members=2, timeout_s=120)
        assert all(shared), f"both workers hold partitions after the rebalance: {shared}"

        played += asyncio.run(player.play(plan(Phase("halt", 40, 0.0))))  # the halt goes on across the move
        wait_until_connector_published(pipeline, played[-1].number)
        owners = _wait_detectors_reached(pipeline, ["worker", "worker2"], everyone, played[-1].number)
        assert set(owners.values()) == {"worker", "worker2"}, f"open outages moved to the new worker: {owners}"
        for exchange, (_owner, row) in _owned_rows(pipeline, ["worker", "worker2"]).items():
            assert row["outage_id"] == opened[exchange].outage_id, f"{exchange}'s owner remembers its outage"

        played += asyncio.run(player.play(plan(Phase("resume", 30, 1.0))))
        resolved_all = watcher.wait_for(lambda evs: _resolved(evs) == set(everyone), 90)
        assert resolved_all, _summary(watcher.events)
        wait_until_connector_published(pipeline, played[-1].number)
        _wait_detectors_reached(pipeline, ["worker", "worker2"], everyone, played[-1].number)
        before_leave = _distinct(watcher.events)

        pipeline.stop("worker2")  # SIGTERM: a clean leave, the partitions move back
        assert _wait_assignment(pipeline, members=1, timeout_s=120) == [set(range(PARTITIONS))]
        played += asyncio.run(player.play(plan(Phase("after", 20, 1.0))))
        wait_until_connector_published(pipeline, played[-1].number)
        owners = _wait_detectors_reached(pipeline, ["worker"], everyone, played[-1].number)
        assert set(owners.values()) == {"worker"}
        time.sleep(3)  # a late re-emission would show up here
        transfer_partitions = _transfer_partitions(kafka, pipeline.topics.transfers)
    finally:
        watcher.close()
        pipeline.stop()

    assert transfer_partitions == {ex: {p} for p, ex in enumerate(REBALANCE_EXCHANGES)}, transfer_partitions
    assert _records(kafka, pipeline.topics.dead_letters) == [], "every event was used"
    assert watcher.invalid == [] or all("correlated_incident" in reason for reason in watcher.invalid)
    distinct = _distinct(watcher.events)
    assert distinct == before_leave, "nothing new after the second worker left"
    _assert_replays_identical(watcher.events)
    for exchange in everyone:
        incident = _incident_of(distinct, exchange)
        assert {e.outage_id for e in incident} == {opened[exchange].outage_id}, "one incident per exchange"
        states = [e.state for e in incident]
        assert states[-2:] == [OutageState.OPEN, OutageState.RESOLVED], (exchange, states)
        assert states.count(OutageState.OPEN) == 1 and states.count(OutageState.RESOLVED) == 1, (exchange, states)
        assert [e.version for e in incident] == list(range(1, len(incident) + 1)), (exchange, states)
        last = _last_withdrawal_before(played, exchange, "halt")
        assert incident[-1].started_at == last.block_time
        first_resume = next(b for b in played if b.phases[exchange] == "resume" and b.withdrawals[exchange])
        assert incident[-1].resolved_at == first_resume.block_time
    correlated = [r for r in _records(kafka, pipeline.topics.outages) if isinstance(r, CorrelatedIncident)]
    _assert_correlated_contiguous(correlated)


# -- scale-out ---------------------------------------------------------------------------------------------------

def test_two_workers_share_the_load_and_find_the_same_outages_as_one(kafka, anvil, run_dir):
    """The same chain read by one worker and by two: same outages, and both workers did part of the work.

    The chain is played once; then each setup reads it from the first block with a connector of its own and
    a fresh topic prefix, so both get the same records delivered the same way and differ only in the number
    of workers. (Two app ids on the same topics would be cheaper but unsound: the outage topic and the
    internal correlation and status topics are named by the topic prefix, so both setups would write into
    and read from each other's.)"""
    player = FleetPlayer(anvil, SCALEOUT_EXCHANGES, seed=29)
    asyncio.run(player.setup())
    run_dir.mkdir(parents=True)
    labels = run_dir / "labels.toml"
    player.write_labels(labels)
    plans = {exchange: [Phase("steady", 480, 0.6)] for exchange in SCALEOUT_EXCHANGES}
    plans["okx"] = [Phase("steady", 330, 1.5), Phase("halt", 100, 0.0), Phase("resume", 50, 1.5)]
    plans["kraken"] = [Phase("steady", 430, 1.5), Phase("late-halt", 50, 0.0)]
    played = asyncio.run(player.play(plans))

    one = _read_chain_with_workers(kafka, anvil, labels, run_dir / "one", played, workers=["worker"])
    two = _read_chain_with_workers(kafka, anvil, labels, run_dir / "two", played, workers=["worker", "worker2"])

    for run in (one, two):
        assert len({p for ps in run.transfer_partitions.values() for p in ps}) >= 2, run.transfer_partitions
        assert set(run.transfer_partitions) == set(SCALEOUT_EXCHANGES), "every exchange was published"
        assert all(len(ps) == 1 for ps in run.transfer_partitions.values()), "one partition per exchange"
        _assert_replays_identical(run.events)
    assert len(two.assignment) == 2 and all(two.assignment), f"both workers held partitions: {two.assignment}"
    assert set(two.owners.values()) == {"worker", "worker2"}, f"both workers decided exchanges: {two.owners}"
    assert set(one.owners.values()) == {"worker"}

    assert _outage_summary(two.events) == _outage_summary(one.events)
    assert _correlated_summary(two.correlated) == _correlated_summary(one.correlated)

    summary = _outage_summary(one.events)
    assert {s[1] for s in summary} == set(SCALEOUT_HALTED), f"halted exchanges only: {summary}"
    for exchange, halt in SCALEOUT_HALTED.items():
        (incident,) = [s for s in summary if s[1] == exchange]
        _oid, _ex, states, started_at, last_tx, scope = incident
        last = _last_withdrawal_before(played, exchange, halt)
        assert started_at == last.block_time and last_tx in last.withdrawals[exchange], incident
        assert scope == ("ethereum",)
        assert OutageState.OPEN.value in states and states.count(OutageState.OPEN.value) == 1, incident
    assert _outage_states(summary, "okx")[-1] == OutageState.RESOLVED.value, "okx paid again"
    assert _outage_states(summary, "kraken")[-1] == OutageState.OPEN.value, "kraken is still halted"


class ChainRead:
    """What one worker setup made of the played chain."""

    def __init__(self, events: list[OutageEvent], correlated: list[CorrelatedIncident], owners: dict[str, str],
                 assignment: list[set[int]], transfer_partitions: dict[str, set[int]]) -> None:
        self.events = events
        self.correlated = correlated
        self.owners = owners
        self.assignment = assignment
        self.transfer_partitions = transfer_partitions


def _read_chain_with_workers(kafka: str, anvil: str, labels: Path, run_dir: Path, played: list[FleetBlockPlayed],
                             workers: list[str]) -> ChainRead:
    """All workers up and holding partitions first, then a connector reads the played blocks from the first."""
    pipeline = PipelineProcesses(run_dir, kafka, anvil, labels, f"scale{len(workers)}w{int(time.time() * 1000)}",
                                 partitions=PARTITIONS)
    ensure_topics(kafka, pipeline.topics, pipeline.partitions)
    try:
        for name in workers:
            pipeline.start_worker(name)
        for name in workers:
            pipeline.wait_worker_ready(name=name)
        assignment = _wait_assignment(pipeline, members=len(workers), timeout_s=120)
        changelog = pipeline.group_assignment(f"{pipeline.app_id}-detector-state-changelog")
        assert set().union(*changelog) == set(range(PARTITIONS)), f"the changelog is assigned: {changelog}"
        pipeline.start_connector(start_block=played[0].number)
        wait_until_connector_published(pipeline, played[-1].number, timeout_s=240)
        owners = _wait_detectors_reached(pipeline, workers, SCALEOUT_EXCHANGES, played[-1].number, timeout_s=180)
        assert _wait_assignment(pipeline, members=len(workers), timeout_s=30) == assignment, "no rebalance meanwhile"
        records = _wait_outages_on_topic(kafka, pipeline, workers)
    finally:
        pipeline.stop()
    assert _records(kafka, pipeline.topics.dead_letters) == [], "every event was used"
    return ChainRead(
        events=[r for r in records if isinstance(r, OutageEvent)],
        correlated=[r for r in records if isinstance(r, CorrelatedIncident)],
        owners=owners,
        assignment=assignment,
        transfer_partitions=_transfer_partitions(kafka, pipeline.topics.transfers),
    )


# -- signals read from the real parts ----------------------------------------------------------------------------

def _wait_assignment(pipeline: PipelineProcesses, members: int, timeout_s: float) -> list[set[int]]:
    """Until the consumer group is stable with ``members`` members that hold every partition between them."""
    deadline = time.monotonic() + timeout_s
    held: list[set[int]] = []
    while time.monotonic() < deadline:
        pipeline.check_alive()
        held = pipeline.group_assignment(pipeline.topics.transfers)
        if len(held) == members and set().union(*held) == set(range(PARTITIONS)):
            return sorted(held, key=min)
        time.sleep(1.0)
    digests = "\n".join(pipeline.log_digest(name) for name in ("worker", "worker2"))
    raise AssertionError(f"consumer group {pipeline.app_id} not stable with {members} members: {held}\n{digests}")


def _owned_rows(pipeline: PipelineProcesses, workers: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """exchange → (worker, its /detector row), asserting that no exchange is decided by two workers at once."""
    owned: dict[str, tuple[str, dict[str, Any]]] = {}
    for worker in workers:
        for row in pipeline.api("/detector", worker=worker):
            assert row["exchange"] not in owned, f"{row['exchange']} known by {owned[row['exchange']][0]} and {worker}"
            owned[row["exchange"]] = (worker, row)
    return owned


def _wait_detectors_reached(pipeline: PipelineProcesses, workers: list[str], exchanges: list[str], block: int,
                            timeout_s: float = 90.0) -> dict[str, str]:
    """Until every exchange is known by one worker's detector at ``block``: exchange → worker deciding it."""
    deadline = time.monotonic() + timeout_s
    owned: dict[str, tuple[str, dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        pipeline.check_alive()
        owned = _owned_rows(pipeline, workers)
        if set(owned) == set(exchanges) and all(row["head_number"] >= block for _w, row in owned.values()):
            return {exchange: worker for exchange, (worker, _row) in owned.items()}
        time.sleep(0.5)
    digests = "\n".join(pipeline.log_digest(worker) for worker in workers)
    raise AssertionError(f"detectors did not reach block {block}: {owned}\n{digests}")


def _emitted_outages(pipeline: PipelineProcesses, worker: str) -> int:
    """Outage events a worker has handed to its producer, by its own /metrics count."""
    port = pipeline.web_port if worker == "worker" else pipeline.worker_ports[worker]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("haltwatch_worker_outage_events_total{")))


def _wait_outages_on_topic(kafka: str, pipeline: PipelineProcesses, workers: list[str],
                           timeout_s: float = 60.0) -> list[Any]:
    """The outage topic's records, once it holds every outage event the workers counted as emitted (a send is
    buffered by the producer, so the detectors' state can be ahead of the topic for a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        emitted = sum(_emitted_outages(pipeline, worker) for worker in workers)
        records = _records(kafka, pipeline.topics.outages)
        on_topic = sum(isinstance(r, OutageEvent) for r in records)
        if on_topic >= emitted:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"the outage topic holds {on_topic} outage events, the workers emitted {emitted}")
        time.sleep(0.5)


def _records(kafka: str, topic: str) -> list[Any]:
    """Every record on a topic, decoded as a downstream consumer would."""
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=3000)
    try:
        out = []
        for message in consumer:
            try:
                record = decode(message.value)
            except SchemaError as exc:
                raise AssertionError(f"undecodable record on {topic}: {exc}") from exc
            out.extend(events_of(record))
        return out
    finally:
        consumer.close()


def _transfer_partitions(kafka: str, topic: str) -> dict[str, set[int]]:
    """exchange → partitions its transfers were actually written to."""
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=3000)
    try:
        where: dict[str, set[int]] = {}
        for message in consumer:
            record = decode(message.value)
            for one in events_of(record):
                if isinstance(one, TransferEvent):
                    where.setdefault(one.exchange, set()).add(message.partition)
        return where
    finally:
        consumer.close()


# -- what the outage topic says ----------------------------------------------------------------------------------

def _opened(events: list[OutageEvent]) -> set[str]:
    return {e.exchange for e in events if e.state is OutageState.OPEN}


def _resolved(events: list[OutageEvent]) -> set[str]:
    return {e.exchange for e in events if e.state is OutageState.RESOLVED}


def _summary(events: list[OutageEvent]) -> list[tuple[str, str, int, str]]:
    return [(e.exchange, e.outage_id[:8], e.version, e.state.value) for e in events]


def _distinct(events: list[OutageEvent]) -> dict[tuple[str, int], OutageEvent]:
    return {(e.outage_id, e.version): e for e in events}


def _incident_of(distinct: dict[tuple[str, int], OutageEvent], exchange: str) -> list[OutageEvent]:
    return [distinct[k] for k in sorted(distinct) if distinct[k].exchange == exchange]


def _assert_replays_identical(events: list[OutageEvent]) -> None:
    """A record sent twice is a replay of one decision: same content but for the wall-clock stamp."""
    first: dict[tuple[str, int], OutageEvent] = {}
    for e in events:
        seen = first.setdefault((e.outage_id, e.version), e)
        assert replace(seen, emitted_at=0.0) == replace(e, emitted_at=0.0), (seen, e)


def _assert_correlated_contiguous(correlated: list[CorrelatedIncident]) -> None:
    by_id: dict[str, dict[int, CorrelatedIncident]] = {}
    for c in correlated:
        seen = by_id.setdefault(c.incident_id, {}).setdefault(c.version, c)
        assert replace(seen, emitted_at=0.0) == replace(c, emitted_at=0.0), (seen, c)
    for incident_id, versions in by_id.items():
        assert sorted(versions) == list(range(1, len(versions) + 1)), (incident_id, sorted(versions))


OutageSummary = tuple[str, str, tuple[str, ...], int, str | None, tuple[str, ...]]


def _outage_summary(events: list[OutageEvent]) -> set[OutageSummary]:
    """(outage_id, exchange, states by version, started_at, last withdrawal, scope) of each incident."""
    _assert_replays_identical(events)
    distinct = _distinct(events)
    incidents: dict[str, list[OutageEvent]] = {}
    for key in sorted(distinct):
        incidents.setdefault(key[0], []).append(distinct[key])
    summary = set()
    for oid, versions in incidents.items():
        assert [e.version for e in versions] == list(range(1, len(versions) + 1)), _summary(versions)
        last = versions[-1]
        summary.add((oid, last.exchange, tuple(e.state.value for e in versions), last.started_at,
                     last.last_withdrawal_tx, tuple(last.scope)))
    return summary


def _outage_states(summary: set[OutageSummary], exchange: str) -> tuple[str, ...]:
    (incident,) = [s for s in summary if s[1] == exchange]
    return incident[2]


def _correlated_summary(correlated: list[CorrelatedIncident]) -> set[tuple[str, int, tuple[str, ...]]]:
    _assert_correlated_contiguous(correlated)
    return {(c.incident_id, c.version, tuple(c.exchanges)) for c in correlated}


def _last_withdrawal_before(played: list[FleetBlockPlayed], exchange: str, phase: str) -> FleetBlockPlayed:
    start = next(i for i, b in enumerate(played) if b.phases[exchange] == phase)
    return next(b for b in reversed(played[:start]) if b.withdrawals[exchange])
