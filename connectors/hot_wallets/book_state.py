"""An evidence book as JSON, so an interrupted ``haltwatch labels discover`` resumes instead of starting over.

The resume file holds the next block to read and everything the book gathered up to it (candidates with
their counterparties, the sweep trails, the newest block time); it is replaced atomically, so a kill at any
moment leaves either the previous state or the new one.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from connectors.hot_wallets.evidence import EvidenceBook, WalletEvidence

FORMAT = 1


def dump(book: EvidenceBook) -> dict[str, Any]:
    return {
        "newest": book.newest,
        "candidates": [_evidence(e) for e in book.candidates.values()],
        "trails": [[sender, *trail] for sender, trail in book.trails.items()],
    }


def load(book: EvidenceBook, data: dict[str, Any]) -> None:
    """Fill an empty ``book`` from :func:`dump`'s output."""
    book.newest = int(data["newest"])
    for raw in data["candidates"]:
        e = WalletEvidence(raw["address"], raw["exchange"], raw["link"], raw["first_seen"])
        for name in ("funded_by", "funded_at", "funding_tx", "top_ups", "pays_exchange", "change", "payouts",
                     "first_payout", "judged_window", "proposed"):
            setattr(e, name, raw[name])
        e.received = {k: int(v) for k, v in raw["received"].items()}
        e.senders, e.recipients, e.windows = set(raw["senders"]), set(raw["recipients"]), set(raw["windows"])
        e.paid_assets = Counter(raw["paid_assets"])
        e.amounts = {k: [int(a) for a in v] for k, v in raw["amounts"].items()}
        book.candidates[e.address] = e
    for sender, recipient, sends, elsewhere in data["trails"]:
        book.trails[sender] = [recipient, sends, elsewhere]


def _evidence(e: WalletEvidence) -> dict[str, Any]:
    return {
        "address": e.address, "exchange": e.exchange, "link": e.link, "first_seen": e.first_seen,
        "funded_by": e.funded_by, "funded_at": e.funded_at, "funding_tx": e.funding_tx, "top_ups": e.top_ups,
        "pays_exchange": e.pays_exchange, "change": e.change, "payouts": e.payouts,
        "first_payout": e.first_payout, "judged_window": e.judged_window, "proposed": e.proposed,
        "received": {k: str(v) for k, v in e.received.items()},  # raw amounts outgrow JSON's safe integers
        "senders": sorted(e.senders), "recipients": sorted(e.recipients), "windows": sorted(e.windows),
        "paid_assets": dict(e.paid_assets), "amounts": {k: [str(a) for a in v] for k, v in e.amounts.items()},
    }


class ResumeFile:
    """Where a discovery run keeps its progress: ``{"format", "key", "next", "book"}``."""

    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        """What the run is (chain, range, thresholds): a file made for another run is refused, not mixed in."""

    def read(self, book: EvidenceBook) -> int | None:
        """The next block to read, with ``book`` filled; None when there is no file."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"resume file {self.path} is unreadable ({exc}); delete it to start over") from None
        if data.get("format") != FORMAT or data.get("key") != self.key:
            raise ValueError(f"resume file {self.path} belongs to another discovery run ({data.get('key')}); "
                             "pass another --resume-file or delete it")
        load(book, data["book"])
        return int(data["next"])

    def write(self, book: EvidenceBook, next_block: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        temporary.write_bytes(orjson.dumps({"format": FORMAT, "key": self.key, "next": next_block,
                                            "book": dump(book)}))
        os.replace(temporary, self.path)
