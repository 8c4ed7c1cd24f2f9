"""Exponential backoff with jitter: bounded retries of one request, and the delays of loops that must go on.

:func:`retried` is the one retry of the connectors' requests: every JSON-RPC call (over a websocket or over
HTTP) and every HTTP request goes through it, so how many attempts, how long each wait (exponential, with
jitter so that many connectors rate-limited together do not come back together), and the log line of each
retry are decided here once, not per protocol. Which errors are worth the same request again is the
protocol's knowledge (an HTTP 429, a JSON-RPC -32005 "too many requests", Tron's ``{"Error": ...}``), so
each protocol module hands its :data:`RetryReason` classifier, kept next to its error types. Giving up
after the last attempt loses nothing: the error propagates, and the connector reconnects (maybe to another
endpoint) and reads again from its checkpoint. tenacity runs the attempts.

:class:`Backoff` is for the outer loops that never give up (reconnects, publish and checkpoint retries):
they wait longer and longer while the trouble lasts and must start short again after a success, which this
small object makes explicit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

log = logging.getLogger(__name__)
T = TypeVar("T")
RetryReason = Callable[[BaseException], str | None]
"""Why an error is worth the same request again (``"rate_limited"``, ``"timeout"``: the reason label of the
retry metric), or None when asking again would not help."""
Sleep = Callable[[float], Awaitable[None]]
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one request: ``attempts`` in all, waiting ``first_wait_s`` x 2^(retry - 1) plus a random
    0..``jitter_s`` before each retry, never more than ``max_wait_s``."""

    attempts: int = 6
    first_wait_s: float = 0.25
    max_wait_s: float = 20.0
    jitter_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"a request needs at least one attempt, got {self.attempts}")

    def wait_s(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1: after the first failure).

        tenacity's ``wait_exponential_jitter`` formula, computed here because that class names the first wait
        ``initial`` in some releases and ``multiplier`` in others (the other one refused or deprecated), and
        because a test can then seed the jitter."""
        jitter = (rng or _RNG).uniform(0.0, self.jitter_s)
        try:
            step = self.first_wait_s * 2.0 ** (retry - 1)
        except OverflowError:  # pragma: no cover - only with absurd attempt counts
            step = self.max_wait_s
        return max(0.0, min(step + jitter, self.max_wait_s))


DEFAULT_POLICY = RetryPolicy()
"""A node's request: six attempts, the five waits 0.25 s doubling to 4 s plus up to 1 s each (8 to 13 s in all),
enough to ride out a short rate limit before the connector's reconnect takes over."""


async def retried(call: Callable[[], Awaitable[T]], what: str, retry_reason: RetryReason,
                  policy: RetryPolicy = DEFAULT_POLICY, on_retry: Callable[[str], None] | None = None,
                  sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> T:
    """``await call()``, again after a wait while it fails with an error ``retry_reason`` names, at most
    ``policy.attempts`` times in all; the last error, or any other one, propagates unchanged.

    Each retry is one warning line (``what``, the error, the attempt and the wait) and one ``on_retry(reason)``
    (the metric). ``sleep`` and ``rng`` are for tests, which must not wait for real.
    """

    def wait(state: RetryCallState) -> float:
        return policy.wait_s(state.attempt_number, rng)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        reason = retry_reason(exc) if exc is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s: %s (%s); attempt %d of %d failed, retry in %.2f s", what, exc, reason,
                    state.attempt_number, policy.attempts, delay)
        if on_retry is not None and reason is not None:
            on_retry(reason)

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda exc: retry_reason(exc) is not None),
        wait=wait,
        stop=stop_after_attempt(policy.attempts),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


@dataclass(slots=True)
class Backoff:
    """Delays initial, 2x, 4x ... up to ``maximum``, each drawn uniformly from [50 %, 150 %] of the step."""

    initial: float = 0.5
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    _step: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._step = self.initial if self._step == 0.0 else min(self._step * 2, self.maximum)
        return self._step * (0.5 + self.rng.random())

    def reset(self) -> None:
        self._step = 0.0
