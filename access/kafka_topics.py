"""Creating haltwatch's Kafka topics: the one place that says how a topic is made (partitions, replication,
compaction), shared by the connectors (``connectors/publisher.py``) and the worker (``streams/app.py``).

It lives in ``haltwatch/`` and imports nothing of the project, so that ``connectors/`` and ``streams/`` may both
use it without either importing the other (``schemas/`` holds the event contract only, not Kafka plumbing).

The replication factor is a setting (``--replication-factor``, ``HALTWATCH_REPLICATION_FACTOR``): 1 suits a
single broker, and a multi-broker cluster wants more, so that losing one broker loses no topic.

Why the worker waits until its topics are listed (:func:`declare_topics`): a consumer that joins its group
while a topic it subscribes to is missing from the broker's metadata gets no partition of it until its next
metadata refresh, five minutes later with aiokafka's default. For the detector's changelog-backed table this
is worse than a delay: every write to the table then fails (Faust's ``PartitionsMismatch``: the changelog
"has 0 partitions"), after the detector has already moved on in memory, so the decision being made (an
outage opening, say) is lost. Faust creates its internal topics itself, but during start-up, moments before
the consumer's first metadata request, and a KRaft broker lists a new topic in its metadata only a little
after it acknowledged the creation: on a fresh deployment the first worker could lose its first five minutes
of decisions. So the worker creates every topic it reads or writes, then waits until the broker lists them
all, before Faust starts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from access.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)
DEFAULT_REPLICATION_FACTOR = 1
"""One copy of each partition: what a single broker (the local infra, the demo, the tests) can hold."""
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": str(64 << 20)}
"""A changelog is compacted, as Faust would create it, in 64 MB segments: Kafka compacts only closed segments,
and the default 1 GB ones let a replay pile up gigabytes per partition first (the detector writes ~9 KB of
state per withdrawal; a 1.2 M-event replay filled this machine's 20 GB of free disk before compaction began)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    """Changelogs are compacted, as Faust itself would create them: the latest state of each key is kept."""


def create_missing(admin: KafkaAdminClient, specs: Iterable[TopicSpec], replication_factor: int) -> set[str]:
    """Create those of ``specs`` the broker does not list; returns the topics it lists afterwards.

    Explicit partition counts and replication beat the broker's defaults, which a deployment rarely sets for
    haltwatch. A topic another process created meanwhile is not an error: both wanted the same topic."""
    wanted = {spec.name: spec for spec in specs}
    existing = set(admin.list_topics())
    missing = sorted(set(wanted) - existing)
    if not missing:
        return existing
    new = [
        NewTopic(
            name,
            num_partitions=wanted[name].partitions,
            replication_factor=replication_factor,
            topic_configs=COMPACTED if wanted[name].compacted else {},
        )
        for name in missing
    ]
    with contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics(new)
    return set(admin.list_topics())


def declare_topics(
    bootstrap: str,
    specs: list[TopicSpec],
    timeout_s: float = 60.0,
    replication_factor: int = DEFAULT_REPLICATION_FACTOR,
    security: KafkaSecurity = PLAINTEXT,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Create the missing topics and wait until the broker lists all of them; False if Kafka did not let us
    within ``timeout_s`` (the worker then starts anyway, and Faust's own retries take over) or if
    ``should_stop`` says the worker is stopping (a SIGTERM must not wait out the retries). One log line per
    failed attempt, with the wait before the next."""
    deadline = time.monotonic() + timeout_s
    wait_s = 1.0
    while not should_stop():
        try:
            if _create_and_check(bootstrap, specs, replication_factor, security):
                return True
            problem = "topics not yet listed by the broker"
        except KafkaError as exc:
            problem = f"Kafka at {bootstrap} not reachable ({exc})"
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("could not declare the worker's topics in %.0f s: %s; starting anyway", timeout_s, problem)
            return False
        wait_s = min(wait_s * 2, 8.0, left)
        log.warning("%s; next try in %.0f s", problem, wait_s)
        resume = time.monotonic() + wait_s
        while time.monotonic() < resume and not should_stop():
            time.sleep(0.1)
    return False


def _create_and_check(bootstrap: str, specs: list[TopicSpec], replication_factor: int,
                      security: KafkaSecurity) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="haltwatch-worker-topics",
                             bootstrap_timeout_ms=5_000, **security.client_options())
    try:
        return {spec.name for spec in specs} <= create_missing(admin, specs, replication_factor)
    finally:
        admin.close()
