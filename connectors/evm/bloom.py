"""The 2048-bit ``logsBloom`` of an EVM block header, used to cross-check a reply of ``eth_getLogs``.

Some providers answer ``eth_getLogs`` for a fresh block from a replica that has not indexed it yet, and
return an empty list. A bloom filter never has false negatives, so when the header's bloom says a
``Transfer`` log may be in the block and the node gave us none, the logs are read again before the block is
published (a false positive only costs a re-read).
"""

from __future__ import annotations

from connectors.eip55 import keccak256

BLOOM_BYTES = 256


def bloom_may_contain(bloom_hex: str, item: bytes) -> bool:
    """True when ``item`` (an address or a topic, raw bytes) may be in the bloom; False means surely not."""
    try:
        bloom = bytes.fromhex(bloom_hex.removeprefix("0x"))
    except ValueError:
        return True  # an unreadable bloom proves nothing
    if len(bloom) != BLOOM_BYTES:
        return True
    digest = keccak256(item)
    for i in (0, 2, 4):
        bit = ((digest[i] << 8) | digest[i + 1]) & 0x7FF
        if not bloom[BLOOM_BYTES - 1 - (bit >> 3)] & (1 << (bit & 7)):
            return False
    return True
