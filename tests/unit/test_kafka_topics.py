"""Topic creation as the connectors and the worker share it (``access/kafka_topics.py``): the replication
factor set for a deployment reaches every topic created, changelogs stay compacted, and topics already there
are left alone (another process may have made them)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import TopicAlreadyExistsError

from access.kafka_topics import COMPACTED, TopicSpec, create_missing
from connectors import publisher
from schemas.topics import Topics


class FakeAdmin:
    """The two calls of ``KafkaAdminClient`` topic creation uses, over an in-memory broker."""

    def __init__(self, existing: set[str], raise_exists: bool = False) -> None:
        self.topics = set(existing)
        self.created: list[Any] = []
        self.raise_exists = raise_exists
        self.closed = False

    def list_topics(self) -> list[str]:
        return sorted(self.topics)

    def create_topics(self, new: list[Any]) -> None:
        self.created += new
        self.topics |= {topic.name for topic in new}
        if self.raise_exists:
            raise TopicAlreadyExistsError()

    def close(self) -> None:
        self.closed = True


def test_missing_topics_get_the_replication_factor_and_changelogs_stay_compacted() -> None:
    admin = FakeAdmin({"t.heads"})
    specs = [TopicSpec("t.transfers", 8), TopicSpec("t.heads", 8), TopicSpec("t-changelog", 4, compacted=True)]
    listed = create_missing(admin, specs, replication_factor=3)
    assert listed == {"t.transfers", "t.heads", "t-changelog"}
    made = {t.name: (t.num_partitions, t.replication_factor, t.topic_configs) for t in admin.created}
    assert made == {"t.transfers": (8, 3, {}), "t-changelog": (4, 3, COMPACTED)}


def test_a_topic_created_meanwhile_by_another_process_is_not_an_error() -> None:
    admin = FakeAdmin(set(), raise_exists=True)
    assert create_missing(admin, [TopicSpec("t.heads", 1)], replication_factor=1) == {"t.heads"}


def test_nothing_is_created_when_every_topic_exists() -> None:
    admin = FakeAdmin({"t.heads"})
    assert create_missing(admin, [TopicSpec("t.heads", 1)], replication_factor=2) == {"t.heads"}
    assert admin.created == []


def test_the_connectors_topics_get_the_replication_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = FakeAdmin(set())
    monkeypatch.setattr(publisher, "KafkaAdminClient", lambda **_: admin)
    topics = Topics("t")
    publisher.ensure_topics("kafka:9092", topics, 6, replication_factor=3)
    made = {t.name: (t.num_partitions, t.replication_factor, t.topic_configs) for t in admin.created}
    wanted = (topics.transfers, topics.heads, topics.outages, topics.dead_letters)
    assert made == {name: (6, 3, {}) for name in wanted}
    assert admin.closed


def test_the_worker_creates_its_topics_and_faust_its_own_with_the_replication_factor(tmp_path: Any) -> None:
    from streams.app import create_app
    from streams.worker.settings import WorkerSettings

    app: Any = create_app(WorkerSettings(replication_factor=3, data_dir=tmp_path / "worker"))
    assert app.replication_factor == 3
    assert app.conf.topic_replication_factor == 3
    assert any(spec.compacted for spec in app.topic_specs), "the detector's changelog is declared compacted"
