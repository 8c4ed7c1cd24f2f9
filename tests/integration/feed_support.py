"""What the Solana/Bitcoin/Tron connector tests share: the connector subprocess and the end-of-test checks.

The checks compare the topics with the loopback node's own ledger (its canonical blocks and the expected
transfers it carries), never with the connector's view: every produced block's head published (once, or at
most once more per SIGKILL), linked parent to child, and exactly the node's withdrawals once retractions are
honoured.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.publisher import ensure_topics
from schemas.records import ChainHead, TransferEvent
from schemas.topics import Topics
from tests.integration.connector_support import (
    ConnectorProcess,
    canonical_withdrawals,
    heads,
    transfers,
    unique_prefix,
)

EXCHANGE = "okx"


@dataclass
class FeedProcess(ConnectorProcess):
    """``haltwatch connect --chain <family> --url …`` as a subprocess with its log in ``run_dir``."""

    urls: list[str] = field(default_factory=list)

    def command_args(self) -> list[str]:
        args = super().command_args()
        for url in self.urls:
            args += ["--url", url]
        return args


def topics_for(kafka: str, name: str) -> tuple[Topics, str]:
    prefix = unique_prefix(name)
    topics = Topics(prefix)
    ensure_topics(kafka, topics, 4)
    return topics, prefix


def check_heads(found: list[ChainHead], canonical: list[tuple[int, str]], max_repeats: int,
                orphaned_ok: bool = False) -> list[str]:
    """Problems with the published heads of the canonical blocks ``(number, hash)``, oldest first.

    Every canonical block has a head; the newest head at each number is the canonical block; the canonical
    heads are linked parent to child; no head is repeated more than ``max_repeats`` times in all (a SIGKILL
    between Kafka's ack and the checkpoint republishes one block). Heads of orphaned blocks are allowed only
    with ``orphaned_ok`` (reorg tests), and then each must come before its replacement.
    """
    problems = []
    first = canonical[0][0]
    found = [h for h in found if h.number >= first]
    newest: dict[int, ChainHead] = {}
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for h in found:
        newest[h.number] = h
        counts[(h.number, h.hash)] += 1
    wanted = dict(canonical)
    for number, block_hash in canonical:
        got = newest.get(number)
        if got is None:
            problems.append(f"no head for block {number}")
        elif got.hash != block_hash:
            problems.append(f"block {number}: newest head {got.hash}, canonical {block_hash}")
    extra = [n for n in newest if n not in wanted and n <= canonical[-1][0]]
    problems += [f"head for {n}, which has no canonical block (a skipped slot?)" for n in extra]
    if not orphaned_ok:
        problems += [f"block {n}: orphaned head {h}" for (n, h), _ in counts.items() if wanted.get(n) != h]
    chain = [newest[n] for n, _ in canonical if n in newest]
    problems += [f"{b.number} does not link to {a.number}" for a, b in itertools.pairwise(chain)
                 if b.parent_hash != a.hash]
    repeats = sum(n - 1 for n in counts.values())
    if repeats > max_repeats:
        problems.append(f"{repeats} repeated heads (at most {max_repeats})")
    return problems


def assert_published(kafka: str, topics: Topics, chain: str, canonical: list[tuple[int, str]],
                     withdrawals: Iterable[tuple[str, str, int]], max_repeats: int = 0,
                     orphaned_ok: bool = False) -> None:
    """The topics hold one head per canonical block and exactly the node's canonical withdrawals."""
    oracle = set(withdrawals)
    assert oracle, "the played blocks hold withdrawals (else this proves nothing)"
    problems = check_heads(heads(kafka, topics, chain), canonical, max_repeats, orphaned_ok)
    assert problems == [], f"heads: {problems[:20]}"
    reads = [r for r in transfers(kafka, topics) if r.record.chain == chain]
    got = canonical_withdrawals(reads, EXCHANGE)
    assert got == oracle, f"missing {sorted(oracle - got)[:5]}, extra {sorted(got - oracle)[:5]}"
    by_id: dict[str, TransferEvent] = {}
    for r in reads:  # any repeat is the identical record
        t = r.record
        first = by_id.setdefault(f"{t.event_id}:{t.removed}", t)
        assert first == t, f"two different records for one event: {first} / {t}"


def wait_for(condition: Callable[[], bool], what: str, process: ConnectorProcess, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        process.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{process.log_tail()}")
        time.sleep(0.1)


def labels_of(family: str) -> Path:
    return Path(__file__).parents[1] / "fixtures" / family / "labels.toml"
