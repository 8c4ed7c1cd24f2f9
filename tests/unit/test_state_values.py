"""The values the worker keeps in its state table occupy their own length, not what the JSON encoder reserved.

The detecting worker holds one saved value per (exchange, chain) for as long as the worker runs (10,000 of
them with 1,000 exchanges on 10 chains), so a value that drags a large hidden buffer along multiplies the
worker's memory. ``sys.getsizeof`` only reports a ``bytes`` object's length; ``tracemalloc`` sees the
allocation itself.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import orjson

from schemas import ChainHead, Direction, TransferEvent
from streams.detection import DetectionPolicy, ManualClock, OutageDetector
from streams.worker.state import part_value, stored_json

T0 = 1_767_225_600
CHAINS = ("alpha", "beta")
COPIES = 200


def allocated_per_value(make: Callable[[], bytes]) -> tuple[float, int]:
    """(bytes allocated per value that ``make`` returns and that is kept, length of one value)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make() for _ in range(COPIES)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / COPIES, len(kept[0])


def busy_detector() -> OutageDetector:
    """A detector whose okx state on two chains looks like a replay's: payouts, heads, hour arrays."""
    detector = OutageDetector(DetectionPolicy(), ManualClock(0))
    for n in range(1, 200):
        for chain in CHAINS:
            t = T0 + n * 30
            if n % 2 == 0:
                detector.on_transfer(
                    TransferEvent(
                        chain=chain,
                        block_number=n,
                        block_hash=f"0x{chain}{n:08d}",
                        block_time=t,
                        tx_hash=f"0x{n:064x}",
                        log_index=0,
                        asset="native",
                        amount="1",
                        decimals=18,
                        from_address="0xhot",
                        to_address="0xuser",
                        exchange="okx",
                        direction=Direction.WITHDRAWAL,
                    )
                )
            detector.on_head(ChainHead(chain, n, f"0x{chain}{n:08d}", f"0x{chain}{n - 1:08d}", t, float(t)))
    return detector


def test_a_saved_chain_part_holds_no_more_than_its_length() -> None:
    detector = busy_detector()

    def chain_part() -> bytes:
        raw = part_value(detector, "okx", "alpha", 3)
        assert raw is not None
        return raw

    allocated, length = allocated_per_value(chain_part)
    assert length > 3_000  # the hour-of-week arrays alone are ~3.6 KB of base64
    assert allocated < length + 256, f"{allocated:.0f} bytes allocated for a {length}-byte value"
    value = orjson.loads(chain_part())
    assert (value["partition"], value["exchange"], value["chain"]) == (3, "okx", "alpha")
    assert value["state"] == detector.export_chain("okx", "alpha")


def test_the_exchange_wide_part_and_what_is_not_tracked() -> None:
    detector = busy_detector()
    allocated, length = allocated_per_value(lambda: part_value(detector, "okx", None, 0) or b"")
    assert allocated < length + 256, f"{allocated:.0f} bytes allocated for a {length}-byte value"
    assert orjson.loads(part_value(detector, "okx", None, 0) or b"")["state"] == detector.export_exchange("okx")
    assert part_value(detector, "okx", "gamma", 0) is None
    assert part_value(detector, "unknown", "alpha", 0) is None


def test_stored_json_is_the_same_json() -> None:
    value = {"a": "x" * 5_000, "b": [1.5, None, True], "c": {"d": "é"}}
    assert stored_json(value) == orjson.dumps(value)
    allocated, length = allocated_per_value(lambda: stored_json(value))
    assert allocated < length + 256
