"""A worker that dies during an outage neither forgets it nor reports it again after it restarts.

Detector state lives in a changelog-backed Faust table; the restarted worker (same consumer group, same
table) recovers it and resumes from the committed offsets. Kafka is at-least-once, so a record emitted
just before the crash may be sent again: it then has the same outage id, version and content (only the
wall-clock ``emitted_at`` may differ), which consumers collapse on (outage_id, version).
What must never happen is a second incident or a new version for the same state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from haltwatch.traffic import Phase
from schemas.records import OutageState
from tests.integration.test_end_to_end import exchange_pipeline, start_pipeline, wait_until_connector_published


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_open_outage_survives_worker_restart_without_reemission(how, kafka, anvil, run_dir):
    player, pipeline, watcher = exchange_pipeline(kafka, anvil, run_dir, f"restart{how}", seed=11)
    try:
        start_pipeline(pipeline, anvil)
        asyncio.run(player.play([Phase("steady", 330, 1.5), Phase("halt", 40, 0.0)]))
        assert watcher.wait_for(lambda evs: any(e.state is OutageState.OPEN for e in evs), 60), watcher.events
        opened = next(e for e in watcher.events if e.state is OutageState.OPEN)

        if how == "SIGKILL":
            pipeline.kill("worker")
        else:
            pipeline.stop("worker")
        played = asyncio.run(player.play([Phase("halt", 40, 0.0)]))  # the halt goes on while it is down
        wait_until_connector_published(pipeline, played[-1].number)
        pipeline.start_worker()
        pipeline.wait_worker_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            s["head_number"] >= played[-1].number for s in pipeline.api("/detector")
        ):
            time.sleep(0.5)
        (state,) = pipeline.api("/detector")
        assert state["outage_id"] == opened.outage_id, "the restarted worker remembers the open outage"

        resumed = asyncio.run(player.play([Phase("resume", 30, 1.5)]))
        assert watcher.wait_for(lambda evs: any(e.state is OutageState.RESOLVED for e in evs), 60), watcher.events
        wait_until_connector_published(pipeline, resumed[-1].number)
        time.sleep(3)
    finally:
        watcher.close()
        pipeline.stop()

    events = watcher.events
    distinct = {(e.outage_id, e.version): e for e in events}
    for e in events:  # a replayed decision is the same record; only its wall-clock stamp may differ
        assert _same_but_time(e, distinct[(e.outage_id, e.version)])
    assert {oid for oid, _ in distinct} == {opened.outage_id}, "one incident, before and after the restart"
    states = [distinct[k].state for k in sorted(distinct)]
    assert states[-2:] == [OutageState.OPEN, OutageState.RESOLVED]
    assert states.count(OutageState.OPEN) == 1
    assert sorted(v for _, v in distinct) == list(range(1, len(distinct) + 1))


def _same_but_time(a, b) -> bool:
    return replace(a, emitted_at=0.0) == replace(b, emitted_at=0.0)
