"""Records to ClickHouse rows: a block record stores as the rows of the transfers it holds."""

from schemas.records import BlockTransfers, ChainHead, Direction, TransferEvent
from streams.store.rows import transfer_row, transfer_rows

HEAD = ChainHead("ethereum", 7, "0xb7", "0xb6", 1_700_000_000, 1.0)
TRANSFERS = [TransferEvent("ethereum", 7, "0xb7", 1_700_000_000, f"0x{i}", -1, "native", "1", 18, "0xa", "0xb",
                           f"ex{i}", Direction.WITHDRAWAL) for i in range(3)]


def test_a_block_record_stores_as_the_rows_of_its_transfers_at_its_offset():
    assert transfer_rows(BlockTransfers(TRANSFERS, HEAD), 7) == [transfer_row(t, 7) for t in TRANSFERS]
    assert [r["ingest_version"] for r in transfer_rows(BlockTransfers(TRANSFERS, None), 5)] == [5, 5, 5]
    assert transfer_rows(TRANSFERS[0], 9) == [transfer_row(TRANSFERS[0], 9)]
    assert transfer_rows(BlockTransfers([], HEAD), 3) == []
