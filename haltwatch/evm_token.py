"""Runtime bytecode of a minimal ERC-20-shaped token, assembled here so the demo and tests need no compiler.

``transfer(to, amount)`` emits the standard ``Transfer(msg.sender, to, amount)`` log (balances are not
kept: haltwatch only reads logs) and ``decimals()`` answers 6. The ``returns_bool=False`` variant returns
nothing from ``transfer``, like USDT on Ethereum, which a connector must count all the same.
"""

from __future__ import annotations

TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
TRANSFER_SELECTOR = "a9059cbb"
DECIMALS = 6


def _push1(value: int) -> bytes:
    return bytes([0x60, value])


def token_runtime(returns_bool: bool = True) -> str:
    """0x-prefixed runtime code for ``anvil_setCode``."""
    return_word = _push1(0x00) + bytes([0x52]) + _push1(0x20) + _push1(0x00) + bytes([0xF3])  # MSTORE; RETURN
    transfer = (
        _push1(0x24) + b"\x35" + _push1(0x00) + b"\x52"  # mem[0:32] = amount
        + _push1(0x04) + b"\x35"  # topic2 = to
        + b"\x33"  # topic1 = caller
        + b"\x7f" + TRANSFER_TOPIC  # topic0
        + _push1(0x20) + _push1(0x00) + b"\xa3"  # LOG3(0, 32, topic0, from, to)
        + ((_push1(0x01) + return_word) if returns_bool else b"\x00")
    )
    header_len = 15  # selector check below, up to and including JUMPI
    decimals_at = header_len + len(transfer)
    header = (
        _push1(0x00) + b"\x35" + _push1(0xE0) + b"\x1c"  # selector = calldata[0:4]
        + b"\x63" + bytes.fromhex("313ce567") + b"\x14"  # == decimals()
        + _push1(decimals_at) + b"\x57"  # JUMPI
    )
    assert len(header) == header_len
    decimals = b"\x5b" + _push1(DECIMALS) + return_word
    return "0x" + (header + transfer + decimals).hex()


def transfer_calldata(to: str, amount: int) -> str:
    return "0x" + TRANSFER_SELECTOR + to.lower().removeprefix("0x").rjust(64, "0") + f"{amount:064x}"
