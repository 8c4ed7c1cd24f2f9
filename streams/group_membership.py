"""How long a worker's place in its Kafka consumer group outlives the worker.

A worker that crashes sends no goodbye: Kafka hands its partitions to the other workers, and lets a restarted
worker rejoin, only once the crashed member's session is over. Until then the exchanges on those partitions
are decided by nobody. Faust's default session (60 s) made that a minute; Kafka's own consumer default (45 s)
is sized for clients whose processing may hold up their heartbeats for long, which a worker does not do: its
heartbeats run on the event loop, and the longest step that holds the loop (one ``detect`` batch) takes well
under a second, while ClickHouse writes run in threads. 10 s still rides out a few missed heartbeats on a busy
machine. Brokers refuse sessions below ``group.min.session.timeout.ms`` (6 s unless configured).

Static membership (``group.instance.id``) was the other way to let a restarted worker back in at once. It was
not chosen: a static member sends no goodbye on a clean stop either, so scaling down or a rolling restart
would leave partitions undecided for a whole session every time.
"""

from __future__ import annotations

DEFAULT_SESSION_TIMEOUT_S = 10.0
"""Seconds Kafka waits for a silent worker (``--kafka-session-timeout``)."""


def heartbeat_interval(session_timeout_s: float) -> float:
    """Seconds between heartbeats: a third of the session, as Kafka advises, so that two may be lost."""
    return session_timeout_s / 3
