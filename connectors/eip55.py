"""EIP-55 mixed-case checksums of EVM addresses.

A label file is typed or pasted by people; one wrong hex digit silently labels a stranger's wallet as an
exchange's. EIP-55 encodes a checksum in the letter case of an address, so a mixed-case address whose
case does not match its keccak-256 hash is a typo we can reject. All-lower or all-upper addresses carry
no checksum and are accepted as written. keccak-256 (not NIST SHA3-256) comes from pycryptodome.
"""

from __future__ import annotations

from Crypto.Hash import keccak


def keccak256(data: bytes) -> bytes:
    """The Ethereum hash: original Keccak padding, 256-bit digest."""
    return keccak.new(data=data, digest_bits=256).digest()


def to_checksum_address(address: str) -> str:
    """The EIP-55 form of a ``0x`` + 40 hex digit address (any case in)."""
    body = address.removeprefix("0x").removeprefix("0X").lower()
    digest = keccak256(body.encode("ascii")).hex()
    return "0x" + "".join(ch.upper() if int(digest[i], 16) >= 8 else ch for i, ch in enumerate(body))


def has_checksum(address: str) -> bool:
    """True when the hex digits mix upper and lower case, i.e. the writer claims an EIP-55 checksum."""
    letters = [ch for ch in address.removeprefix("0x") if ch.isalpha()]
    return any(ch.isupper() for ch in letters) and any(ch.islower() for ch in letters)


def checksum_error(address: str) -> str | None:
    """Why a mixed-case address fails its EIP-55 checksum, or None when it passes or carries none."""
    if not has_checksum(address):
        return None
    expected = to_checksum_address(address)
    if address.removeprefix("0x") != expected.removeprefix("0x"):
        return f"EIP-55 checksum mismatch for {address} (expected {expected}); check for a typo"
    return None
