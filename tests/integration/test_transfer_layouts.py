"""Both layouts of the transfers topic on real Kafka (``connectors/block_layout.py``): a block published as one
``block_transfers`` record per partition puts every transfer on the partition the keyed ``event`` layout puts
it on, in the same order, with the head after them on every partition."""

from pathlib import Path

from connectors.block_layout import TransferLayout
from connectors.publisher import BlockPublisher, ensure_topics
from schemas.records import BlockTransfers, ChainHead, Direction, LabelSuggestion, TransferEvent
from schemas.topics import Topics
from tests.integration.connector_support import read_topic, unique_prefix

PARTITIONS = 5


def block(number: int) -> tuple[ChainHead, list[TransferEvent]]:
    head = ChainHead("ethereum", number, f"0x{number:064x}", f"0x{number - 1:064x}", 1_700_000_000 + number, 1.0)
    transfers = [
        TransferEvent("ethereum", number, head.hash, head.block_time, f"0x{number}{i:062x}", -1, "native", "1", 18,
                      "0xa", "0xb", f"exchange{i % 40}", Direction.WITHDRAWAL if i % 3 else Direction.DEPOSIT)
        for i in range(120)
    ]
    return head, transfers


def published(kafka: str, layout: TransferLayout) -> tuple[list[BlockTransfers], dict[int, list[object]]]:
    """Two blocks and a label suggestion published in ``layout``: the raw records, and per partition what
    they stand for, in order."""
    topics = Topics(unique_prefix(f"layout-{layout.value}"))
    ensure_topics(kafka, topics, PARTITIONS)
    publisher = BlockPublisher(kafka, topics, layout=layout)
    suggestion = LabelSuggestion("exchange7", "ethereum", "0xe", "hot", "0xc", 1, "0xf", 25, 40, 2, 3.0)
    try:
        for number in (1, 2):
            head, transfers = block(number)
            publisher.publish_block(head, transfers, [suggestion] if number == 2 else [])
    finally:
        publisher.close()
    reads = read_topic(kafka, topics.transfers)
    by_partition: dict[int, list[object]] = {}
    for r in reads:
        by_partition.setdefault(r.partition, []).append(r.record)
    return reads, by_partition


def test_block_records_put_each_transfer_where_the_keyed_layout_does(kafka: str, tmp_path: Path) -> None:
    _, keyed = published(kafka, TransferLayout.EVENT)
    reads, blocked = published(kafka, TransferLayout.BLOCK)
    assert blocked == keyed, "same records per partition, same order, heads after their block's transfers"
    assert sorted(blocked) == list(range(PARTITIONS))
    for records in blocked.values():
        heads = [r.number for r in records if isinstance(r, ChainHead)]
        assert heads == [1, 2], "each partition holds both heads, in order"
    offsets = {(r.partition, r.offset) for r in reads}
    assert len(offsets) == 2 * PARTITIONS + 1, "one record per block and partition, and the suggestion"
    spread = {p for p, records in blocked.items() if any(isinstance(r, TransferEvent) for r in records)}
    assert len(spread) > 1, "40 exchanges spread over several partitions (else the test shows little)"
