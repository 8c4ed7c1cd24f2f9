"""Reading a consumer group's assignment as the Kafka admin client returns it (used to see a rebalance end)."""

from __future__ import annotations

import struct

from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment

from haltwatch.local import assigned_partitions


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _raw_assignment(version: int) -> bytes:
    """The consumer-protocol layout: version, [topic, [partition]], user data (Faust puts its own there)."""
    return (
        struct.pack(">hi", version, 2)
        + _string("p.transfers.v1") + struct.pack(">i", 2) + struct.pack(">ii", 1, 3)
        + _string("p.heads.v1") + struct.pack(">i", 1) + struct.pack(">i", 0)
        + struct.pack(">i", 4) + b"\x78\x9c\x03\x00"
    )


def test_raw_assignment_as_faust_writes_it_is_read():
    raw = _raw_assignment(version=4)  # the version Faust's assignor writes
    assert assigned_partitions(raw, "p.transfers.v1") == {1, 3}
    assert assigned_partitions(raw, "p.heads.v1") == {0}
    assert assigned_partitions(raw, "p.outages.v1") == set()


def test_decoded_assignment_object_and_dict_give_the_same_partitions():
    decoded = ConsumerProtocolAssignment.decode(_raw_assignment(version=0))
    for form in (decoded, decoded.to_dict()):
        assert assigned_partitions(form, "p.transfers.v1") == {1, 3}
        assert assigned_partitions(form, "p.heads.v1") == {0}


def test_empty_assignment_holds_nothing():
    assert assigned_partitions(b"", "p.transfers.v1") == set()
