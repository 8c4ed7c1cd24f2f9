"""Address formats of the non-EVM chains: base58, base58check and bech32/bech32m, written out here.

Label files are typed by people, so every address is checked before it is trusted: a typo must be a clear
error at load time, not a wallet that silently never matches. The formats differ in what "the same address"
means, which is why lookups need a per-family canonical form:

- Solana: base58 of a 32-byte public key; case-sensitive, used as is.
- Bitcoin: bech32/bech32m (``bc1…``, BIP-173/350) is case-insensitive and written lower-case; base58check
  (``1…``, ``3…``) is case-sensitive and used as is.
- Tron: base58check of ``0x41`` + 20 bytes (``T…``); nodes speak hex (``41…``), which we convert.

No dependency is worth it for ~100 lines of reference algorithms; the test vectors of the BIPs and known
mainnet addresses pin them down (tests/unit/test_addresses.py).
"""

from __future__ import annotations

import hashlib

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}
BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3
BITCOIN_HRPS = ("bc", "tb", "bcrt")
"""Human-readable parts of mainnet, testnet/signet and regtest segwit addresses."""
BITCOIN_BASE58_VERSIONS = {0x00, 0x05, 0x6F, 0xC4}
"""P2PKH and P2SH version bytes of mainnet (0x00, 0x05) and testnet/signet/regtest (0x6f, 0xc4)."""
TRON_PREFIX = 0x41


class AddressError(ValueError):
    """Not a valid address of the family; the message says what is wrong with it."""


# -- base58 / base58check ----------------------------------------------------------------------------
def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rest = divmod(number, 58)
        out.append(B58_ALPHABET[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise AddressError(f"{char!r} is not a base58 character (0, O, I and l are not used)")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def b58check_encode(payload: bytes) -> str:
    return b58encode(payload + _checksum(payload))


def b58check_decode(text: str) -> bytes:
    """The payload of a base58check string; an :class:`AddressError` when the checksum does not match."""
    raw = b58decode(text)
    if len(raw) < 5:
        raise AddressError("too short for base58check")
    payload, check = raw[:-4], raw[-4:]
    if _checksum(payload) != check:
        raise AddressError("base58check checksum mismatch (a typo?)")
    return payload


# -- bech32 / bech32m (BIP-173, BIP-350) ---------------------------------------------------------------
def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                chk ^= generator[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out = []
    maxv = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (to_bits - bits)) & maxv)
    elif not pad and (bits >= from_bits or (acc << (to_bits - bits)) & maxv):
        raise AddressError("bech32 data has invalid padding")
    return out


def segwit_decode(address: str) -> tuple[str, int, bytes]:
    """(hrp, witness version, witness program) of a segwit address; checks checksum, variant and lengths."""
    if address.lower() != address and address.upper() != address:
        raise AddressError("bech32 address mixes upper and lower case")
    text = address.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text) or len(text) > 90:
        raise AddressError("not a bech32 address (hrp, '1', data and a 6-character checksum)")
    hrp, data_part = text[:sep], text[sep + 1:]
    if any(c not in BECH32_CHARSET for c in data_part):
        raise AddressError("bech32 data contains a character outside its alphabet")
    data = [BECH32_CHARSET.index(c) for c in data_part]
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise AddressError("bech32 checksum mismatch (a typo?)")
    version, program = data[0], bytes(_convert_bits(data[1:-6], 5, 8, pad=False))
    if version > 16 or not 2 <= len(program) <= 40:
        raise AddressError("invalid segwit version or program length")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError("segwit v0 program must be 20 or 32 bytes")
    if (version == 0) != (const == _BECH32_CONST):
        raise AddressError("segwit v0 needs bech32, v1+ needs bech32m (BIP-350)")
    return hrp, version, program


def segwit_encode(hrp: str, version: int, program: bytes) -> str:
    """A segwit address (bech32 for v0, bech32m for v1+); used to build test data."""
    data = [version, *_convert_bits(list(program), 8, 5, pad=True)]
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in [*data, *checksum])


# -- per family ------------------------------------------------------------------------------------------
def solana_address(text: str) -> str:
    """A Solana account address (base58 of 32 bytes), unchanged: base58 is case-sensitive."""
    if not 32 <= len(text) <= 44:
        raise AddressError(f"a Solana address has 32 to 44 base58 characters, not {len(text)}")
    if len(b58decode(text)) != 32:
        raise AddressError("a Solana address must decode to 32 bytes")
    return text


def bitcoin_address(text: str) -> str:
    """A Bitcoin address in its canonical form: bech32 lower-cased, base58check unchanged."""
    if text.lower().startswith(tuple(h + "1" for h in BITCOIN_HRPS)):
        hrp, _, _ = segwit_decode(text)
        if hrp not in BITCOIN_HRPS:
            raise AddressError(f"unknown bech32 prefix {hrp!r}")
        return text.lower()
    payload = b58check_decode(text)
    if len(payload) != 21 or payload[0] not in BITCOIN_BASE58_VERSIONS:
        raise AddressError("not a P2PKH/P2SH address (version byte and 20-byte hash)")
    return text


def tron_address(text: str) -> str:
    """A Tron address as base58check ``T…``; the hex form ``41…`` (40+2 digits) is converted."""
    if len(text) == 42 and text[:2] == "41":
        return tron_from_hex(text)
    payload = b58check_decode(text)
    if len(payload) != 21 or payload[0] != TRON_PREFIX:
        raise AddressError("a Tron address is 0x41 + 20 bytes in base58check ('T…')")
    return text


def tron_from_hex(hex_address: str) -> str:
    """``41`` + 40 hex digits (or just the 40 digits of an EVM-style address) as base58check ``T…``."""
    digits = hex_address[2:] if hex_address[:2] in ("0x", "0X") else hex_address
    if len(digits) == 40:
        digits = "41" + digits
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise AddressError(f"not hex: {hex_address!r}") from None
    if len(raw) != 21 or raw[0] != TRON_PREFIX:
        raise AddressError(f"a Tron hex address is 41 + 20 bytes, got {hex_address!r}")
    return b58check_encode(raw)


def tron_to_hex(address: str) -> str:
    """``T…`` as the node's hex form ``41…``."""
    return b58check_decode(tron_address(address)).hex()
