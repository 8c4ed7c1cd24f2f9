"""Read a sequence ahead of its consumer, in order, with a bounded number of reads in flight.

Catching up after a restart means hundreds of blocks; reading them one by one wastes the node's latency,
reading them all at once exhausts memory and rate limits. The consumer (the writer, which waits for Kafka)
takes results strictly in order, and at most ``depth`` reads run ahead of it, so a slow broker still slows
the reading down.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


async def read_ahead(
    keys: Iterable[K], read: Callable[[K], Awaitable[V]], depth: int
) -> AsyncGenerator[tuple[K, V], None]:
    """``(key, await read(key))`` in the order of ``keys``; reads still in flight are cancelled on exit."""
    pending: deque[tuple[K, asyncio.Task[V]]] = deque()
    remaining = iter(keys)

    def fill() -> None:
        while len(pending) < max(depth, 1):
            try:
                key = next(remaining)
            except StopIteration:
                return
            pending.append((key, asyncio.ensure_future(read(key))))

    try:
        fill()
        while pending:
            key, task = pending.popleft()
            value = await task
            fill()
            yield key, value
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
