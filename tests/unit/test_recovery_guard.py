"""When a table recovery's changelog records count as lost (streams/recovery_guard.py)."""

from __future__ import annotations

from streams.recovery_guard import STALL_S, PartitionRecovery, lost_from

QUIET = STALL_S + 1


def test_records_the_client_moved_past_are_read_again_from_the_first_one_not_applied():
    # the case seen: recovery from the start of a 51-record partition, the client already at 51
    assert lost_from(PartitionRecovery(applied=-1, last_offset=50, position=51, quiet_s=QUIET)) == 0
    assert lost_from(PartitionRecovery(applied=None, last_offset=50, position=51, quiet_s=QUIET)) == 0
    # part of the partition applied, the rest lost
    assert lost_from(PartitionRecovery(applied=20, last_offset=50, position=51, quiet_s=QUIET)) == 21


def test_a_recovery_still_on_its_way_is_left_alone():
    # records fetched a moment ago may still be in Faust's queues
    assert lost_from(PartitionRecovery(applied=-1, last_offset=50, position=51, quiet_s=STALL_S - 1)) is None
    # the client has not fetched past what was applied: the records are still to come
    assert lost_from(PartitionRecovery(applied=20, last_offset=50, position=21, quiet_s=QUIET)) is None
    assert lost_from(PartitionRecovery(applied=-1, last_offset=50, position=0, quiet_s=QUIET)) is None
    assert lost_from(PartitionRecovery(applied=-1, last_offset=50, position=None, quiet_s=QUIET)) is None


def test_a_finished_or_empty_partition_needs_nothing():
    assert lost_from(PartitionRecovery(applied=50, last_offset=50, position=51, quiet_s=QUIET)) is None
    assert lost_from(PartitionRecovery(applied=None, last_offset=-1, position=0, quiet_s=QUIET)) is None
    assert lost_from(PartitionRecovery(applied=-1, last_offset=None, position=51, quiet_s=QUIET)) is None
