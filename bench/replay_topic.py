"""A replayable transfers topic for throughput benchmarks: many exchanges on many chains, a few halting.

The records are the contract's (:mod:`schemas.records`, encoded with :func:`schemas.codec.encode`) and are
laid out the way :class:`connectors.publisher.BlockPublisher` lays them out in either layout
(``connectors/block_layout.py``): ``block``, one :class:`BlockTransfers` per block and partition, or
``event``, per block the transfers keyed by exchange first, then the block's :class:`ChainHead` once to
every partition of the transfers topic. One producer with idempotence keeps each partition's order, so a
head still follows its block's transfers without waiting for acknowledgements block by block (that wait is
what makes a connector slow, and here only the consumer side is measured). Either layout holds the same
events: the transfers and every head once per partition.

Traffic: every (exchange, chain) pays out with probability ``withdraw_p`` per block and receives deposits
with ``deposit_p``, so that after about an hour of chain time every pair is warm. The first ``halt_all``
exchanges then stop paying on every chain for ``halt_blocks`` blocks (an exchange-wide halt) and the next
``halt_one`` stop on their first chain only; both resume afterwards, so outages open and resolve.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import KafkaProducer

from connectors.block_layout import TransferLayout, block_records
from schemas.codec import encode
from schemas.records import ChainHead, Direction, TransferEvent

GENESIS = 1_767_225_600
"""Chain time of block 0 (2026-01-01 00:00 UTC, a Thursday)."""


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    exchanges: int = 1000
    chains: int = 10
    blocks: int = 200
    block_s: int = 30
    withdraw_p: float = 0.5
    deposit_p: float = 0.1
    halt_all: int = 5
    halt_one: int = 5
    halt_from: int = 140
    halt_blocks: int = 50
    seed: int = 7

    def exchange(self, e: int) -> str:
        return f"exchange{e:04d}"

    def chain(self, c: int) -> str:
        return f"chain{c:02d}"

    def halted(self, e: int, c: int, block: int) -> bool:
        if not self.halt_from <= block < self.halt_from + self.halt_blocks:
            return False
        return e < self.halt_all or (e < self.halt_all + self.halt_one and c == 0)

    @property
    def halting(self) -> set[str]:
        return {self.exchange(e) for e in range(self.halt_all + self.halt_one)}


@dataclass(frozen=True, slots=True)
class Block:
    head: ChainHead
    transfers: list[TransferEvent]


def tx_hash(chain: int, block: int, index: int) -> str:
    """A transaction hash as a chain makes them: 32 bytes that look random (the transfers sink's dedup
    lookup relies on that, see ``streams/store/dedup.py``), and always the same for the same transfer."""
    return "0x" + hashlib.sha256(f"{chain}:{block}:{index}".encode()).hexdigest()


def blocks(plan: ReplayPlan) -> Iterator[Block]:
    """The whole topic in publishing order: block by block, chain by chain."""
    rng = random.Random(plan.seed)
    names = [plan.exchange(e) for e in range(plan.exchanges)]
    for block in range(1, plan.blocks + 1):
        for c in range(plan.chains):
            chain = plan.chain(c)
            block_hash = f"0x{c:02x}{block:062x}"
            parent_hash = f"0x{c:02x}{block - 1:062x}"
            block_time = GENESIS + block * plan.block_s + c
            index = 0
            transfers = []
            for e, exchange in enumerate(names):
                draw = rng.random()
                if draw < plan.withdraw_p:
                    if plan.halted(e, c, block):
                        continue
                    direction = Direction.WITHDRAWAL
                elif draw < plan.withdraw_p + plan.deposit_p:
                    direction = Direction.DEPOSIT
                else:
                    continue
                hot = f"0x{e:040x}"
                user = f"0x{rng.getrandbits(160):040x}"
                frm, to = (hot, user) if direction is Direction.WITHDRAWAL else (user, hot)
                event = TransferEvent(
                    chain=chain, block_number=block, block_hash=block_hash, block_time=block_time,
                    tx_hash=tx_hash(c, block, index), log_index=-1, asset="native",
                    amount=str(rng.randrange(10**15, 10**19)), decimals=18, from_address=frm, to_address=to,
                    exchange=exchange, direction=direction,
                )
                index += 1
                transfers.append(event)
            yield Block(ChainHead(chain, block, block_hash, parent_hash, block_time, float(block_time)), transfers)


@dataclass
class Produced:
    transfers: int = 0
    heads: int = 0
    records: int = 0
    """Kafka records on the transfers topic."""
    events: int = 0
    """Events they hold: the transfers, and each head once per partition (the same in either layout)."""
    withdrawals: int = 0


def produce(bootstrap: str, topics: list[str], partitions: int, plan: ReplayPlan,
            layout: TransferLayout = TransferLayout.BLOCK) -> Produced:
    """Write the plan's records to each of ``topics`` (identical copies) and wait for every acknowledgement."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=50,
        batch_size=1 << 20,
        max_request_size=8 << 20,
        client_id="haltwatch-bench",
    )
    counts = Produced()
    failed: list[BaseException] = []
    every = list(range(partitions))

    def send(key: bytes, value: bytes, partition: int | None = None) -> None:
        for topic in topics:
            producer.send(topic, key=key, value=value, partition=partition).add_errback(failed.append)
        counts.records += 1

    try:
        for block in blocks(plan):
            head, key = block.head, block.head.chain.encode()
            if layout is TransferLayout.BLOCK:
                for partition, record in block_records(head, block.transfers, every):
                    send(key, encode(record), partition)
            else:
                for transfer in block.transfers:
                    send(transfer.exchange.encode(), encode(transfer))
                head_bytes = encode(head)
                for partition in every:
                    send(key, head_bytes, partition)
            counts.heads += 1
            counts.transfers += len(block.transfers)
            counts.withdrawals += sum(t.direction is Direction.WITHDRAWAL for t in block.transfers)
            counts.events += len(block.transfers) + partitions
            if failed:
                raise RuntimeError(f"Kafka refused a send: {failed[0]!r}")
        producer.flush(timeout=300)
        if failed:
            raise RuntimeError(f"Kafka refused a send: {failed[0]!r}")
    finally:
        producer.close(timeout=60)
    return counts
