"""The one retry of the connectors' requests (``connectors.backoff.retried``) and what each protocol retries.

No test sleeps for real: the helper's sleep is injected (or the waits are capped at 0 s), and the recorded
waits are checked against the policy.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from connectors.backoff import RetryPolicy, retried
from connectors.evm.node import NodeClient
from connectors.evm.rpc import RpcConnectionLost, RpcError, RpcTimeout
from connectors.evm.rpc import retry_reason as rpc_retry_reason
from connectors.http_json import BadPayload, HttpError, HttpUnavailable, NotFound, OversizedPayload, RequestTimeout
from connectors.http_json import retry_reason as http_retry_reason
from connectors.solana.rpc import SolanaRpcError
from connectors.solana.rpc import retry_reason as solana_retry_reason
from connectors.tron.api import ErrorReply
from connectors.tron.api import retry_reason as tron_retry_reason


class Flaky(Exception):
    """Retryable in these tests."""


class Broken(Exception):
    """Not retryable in these tests."""


def flaky_reason(exc: BaseException) -> str | None:
    return "flaky" if isinstance(exc, Flaky) else None


class Calls:
    """A request that fails with ``errors`` in turn, then answers ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


NO_JITTER = RetryPolicy(attempts=4, first_wait_s=0.5, max_wait_s=1.5, jitter_s=0.0)


async def test_it_gives_up_after_the_policys_attempts_with_the_last_error() -> None:
    calls, sleeps, reasons = Calls(*(Flaky(f"try {i}") for i in range(1, 10))), Sleeps(), []
    with pytest.raises(Flaky, match="try 4"):
        await retried(calls, "get x", flaky_reason, NO_JITTER, reasons.append, sleep=sleeps)
    assert calls.count == 4, "four attempts, not one more"
    assert reasons == ["flaky"] * 3, "one metric per retry, none for the final failure"
    assert sleeps.waits == [0.5, 1.0, 1.5], "doubling from first_wait_s, capped at max_wait_s"


async def test_an_error_that_is_not_retryable_propagates_at_once() -> None:
    calls, sleeps, reasons = Calls(Broken("no")), Sleeps(), []
    with pytest.raises(Broken):
        await retried(calls, "get x", flaky_reason, NO_JITTER, reasons.append, sleep=sleeps)
    assert (calls.count, sleeps.waits, reasons) == (1, [], [])


async def test_a_retried_request_that_then_succeeds_returns_its_answer() -> None:
    calls, sleeps = Calls(Flaky("busy"), Flaky("busy")), Sleeps()
    assert await retried(calls, "get x", flaky_reason, NO_JITTER, sleep=sleeps) == "ok"
    assert calls.count == 3 and sleeps.waits == [0.5, 1.0]


async def test_a_single_attempt_policy_never_waits() -> None:
    calls, sleeps = Calls(Flaky("busy")), Sleeps()
    with pytest.raises(Flaky):
        await retried(calls, "get x", flaky_reason, RetryPolicy(attempts=1), sleep=sleeps)
    assert calls.count == 1 and sleeps.waits == []
    with pytest.raises(ValueError, match="at least one attempt"):
        RetryPolicy(attempts=0)


async def test_the_waits_have_bounded_jitter() -> None:
    policy = RetryPolicy(attempts=6, first_wait_s=0.25, max_wait_s=20.0, jitter_s=1.0)
    sleeps = Sleeps()
    with pytest.raises(Flaky):
        await retried(Calls(*[Flaky("x")] * 6), "get x", flaky_reason, policy, sleep=sleeps, rng=random.Random(7))
    steps = [0.25, 0.5, 1.0, 2.0, 4.0]
    assert all(s <= w <= s + 1.0 for w, s in zip(sleeps.waits, steps, strict=True)), sleeps.waits
    assert len({round(w - s, 6) for w, s in zip(sleeps.waits, steps, strict=True)}) > 1, "the jitter varies"


async def test_each_retry_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="connectors.backoff"):
        await retried(Calls(Flaky("HTTP 429"), Flaky("HTTP 429")), "POST https://node/", flaky_reason, NO_JITTER,
                      sleep=Sleeps())
    lines = [r.getMessage() for r in caplog.records if r.name == "connectors.backoff"]
    assert lines == ["POST https://node/: HTTP 429 (flaky); attempt 1 of 4 failed, retry in 0.50 s",
                     "POST https://node/: HTTP 429 (flaky); attempt 2 of 4 failed, retry in 1.00 s"]
    assert {r.levelname for r in caplog.records if r.name == "connectors.backoff"} == {"WARNING"}


@pytest.mark.parametrize(("error", "reason"), [
    (HttpError("http://n", 429, "slow down"), "rate_limited"),
    (HttpError("http://n", 503, "unavailable"), "http_error"),
    (HttpError("http://n", 400, "bad request"), None),
    (NotFound("http://n", 404, "no block"), None),
    (RequestTimeout("no answer"), "timeout"),
    (BadPayload("not JSON"), "bad_payload"),
    (OversizedPayload("too big"), None),
    (HttpUnavailable("refused"), None),
])
def test_what_http_retries(error: Exception, reason: str | None) -> None:
    assert http_retry_reason(error) == reason


@pytest.mark.parametrize(("error", "reason"), [
    (RpcTimeout("eth_blockNumber", 30), "timeout"),
    (RpcError("eth_getLogs", -32005, "rate limit exceeded"), "rate_limited"),
    (RpcError("eth_getLogs", 429, "too many requests"), "rate_limited"),
    (RpcError("eth_getLogs", -32005, "query returned more than 10000 results"), None),
    (RpcError("eth_getBlockByNumber", -32000, "header not found"), None),
    (RpcConnectionLost("closed"), None),
])
def test_what_json_rpc_over_a_websocket_retries(error: Exception, reason: str | None) -> None:
    assert rpc_retry_reason(error) == reason


def test_what_the_http_json_rpc_families_retry_on_top_of_http() -> None:
    assert solana_retry_reason(SolanaRpcError("getBlock", 429, "Too many requests")) == "rate_limited"
    assert solana_retry_reason(SolanaRpcError("getBlock", -32007, "Slot 5 was skipped")) is None
    assert tron_retry_reason(ErrorReply("/wallet/getnowblock: db busy")) == "node_error"
    for reason in (solana_retry_reason, tron_retry_reason):
        assert reason(HttpError("http://n", 429, "slow down")) is None, "JsonHttp already retried it"


class FakeRpc:
    """A websocket's ``call`` that fails with ``errors`` in turn, then answers the method's name."""

    url = "ws://node"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        self.calls.append(method)
        if self.errors:
            raise self.errors.pop(0)
        return method


@pytest.mark.parametrize(("errors", "outcome", "retries"), [
    ([RpcError("eth_call", -32005, "rate limit"), RpcTimeout("eth_call", 30)], None, ["rate_limited", "timeout"]),
    ([RpcError("eth_call", -32000, "execution reverted")], RpcError, []),
    ([RpcTimeout("eth_call", 30)] * 7, RpcTimeout, ["timeout"] * 5),
])
async def test_a_node_clients_calls_go_through_the_retry(errors: list[Exception], outcome: type[Exception] | None,
                                                         retries: list[str]) -> None:
    rpc, reasons = FakeRpc(*errors), []
    node = NodeClient(rpc, on_retry=reasons.append, max_wait_s=0.0)  # type: ignore[arg-type]
    if outcome is None:
        assert await node.call("eth_call") == "eth_call"
    else:
        with pytest.raises(outcome):
            await node.call("eth_call")
    assert reasons == retries, "each retry reaches the metric under its reason"
    assert len(rpc.calls) == len(retries) + 1, "six attempts at most (the default policy)"
