"""JSON over HTTP for the node APIs that are not websockets: Solana JSON-RPC, Esplora REST, Tron's HTTP API.

Transient trouble is retried here, a bounded number of times with jittered exponential waits
(:func:`connectors.backoff.retried`): HTTP 429 and 5xx gateway errors, timeouts, and a body that is not JSON
(a proxy's error page, a cut response); :func:`retry_reason` says which. Every body we cannot use is handed
to ``on_bad_payload`` with the raw text and the reason, so it reaches the dead-letter topic instead of
vanishing. Everything else propagates as a typed error; the connector then reconnects (maybe to another
endpoint) and reads again from its checkpoint, so giving up here never loses a block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from connectors.backoff import RetryPolicy, retried

BadPayloadHandler = Callable[[str, str], None]
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})


class HttpError(RuntimeError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {body[:200]}")
        self.url = url
        self.status = status
        self.body = body


class NotFound(HttpError):
    """HTTP 404: the thing asked for does not exist (yet), e.g. a block height above the tip."""


class HttpUnavailable(RuntimeError):
    """The endpoint cannot be reached (refused, reset, DNS): the connector reconnects."""


class RequestTimeout(RuntimeError):
    """No complete answer within the call timeout."""


class BadPayload(ValueError):
    """A 200 answer whose body is not JSON (or too large); already reported to ``on_bad_payload``."""


class OversizedPayload(BadPayload):
    """The body is larger than allowed; asking again would not help."""


def retry_reason(exc: BaseException) -> str | None:
    """Why the same request is worth making again after a wait (the retry metric's reason), None when not:
    a 404, a refused connection (the connector reconnects instead) or an oversized body (it would be again)."""
    if isinstance(exc, HttpError):
        if exc.status not in RETRIED_STATUS:
            return None
        return "rate_limited" if exc.status == 429 else "http_error"
    if isinstance(exc, RequestTimeout):
        return "timeout"
    if isinstance(exc, BadPayload) and not isinstance(exc, OversizedPayload):
        return "bad_payload"
    return None


class JsonHttp:
    """One HTTP session to one endpoint; use ``async with``. Paths are appended to ``base_url``."""

    def __init__(
        self,
        base_url: str,
        on_bad_payload: BadPayloadHandler | None = None,
        timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = 256 * 1024 * 1024,
        attempts: int = 6,
        max_wait_s: float = 20.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.on_bad_payload = on_bad_payload or (lambda raw, reason: None)
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self.max_bytes = max_bytes
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self.on_retry = on_retry or (lambda reason: None)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> JsonHttp:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=self.headers, raise_for_status=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _retried(self, method: str, path: str, body: Any, as_json: bool) -> Any:
        return await retried(lambda: self._once(method, path, body, as_json), f"{method} {self.base_url}{path}",
                             retry_reason, RetryPolicy(self.attempts, max_wait_s=self.max_wait_s), self.on_retry)

    async def get_json(self, path: str) -> Any:
        return await self._retried("GET", path, None, True)

    async def get_text(self, path: str) -> str:
        return str(await self._retried("GET", path, None, False))

    async def post_json(self, path: str, body: Any) -> Any:
        return await self._retried("POST", path, body, True)

    async def _once(self, method: str, path: str, body: Any, as_json: bool) -> Any:
        if self._session is None:
            raise HttpUnavailable(f"{self.base_url}: session not open")
        url = self.base_url + path
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._session.request(method, url, data=data, headers=headers) as response:
                raw = await self._read(response, url)
                text = raw.decode("utf-8", "replace")
                if response.status == 404:
                    raise NotFound(url, 404, text)
                if response.status >= 400:
                    raise HttpError(url, response.status, text)
        except TimeoutError:
            raise RequestTimeout(f"{method} {url}: no answer within {self.timeout_s} s") from None
        except aiohttp.ClientPayloadError as exc:
            raise RequestTimeout(f"{method} {url}: response cut short ({exc})") from None
        except aiohttp.ClientError as exc:
            raise HttpUnavailable(f"{method} {url}: {exc or type(exc).__name__}") from None
        if not as_json:
            return text.strip()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.on_bad_payload(text[:1_000_000], f"{method} {url}: body is not JSON: {exc}")
            raise BadPayload(f"{method} {url}: body is not JSON") from None

    async def _read(self, response: aiohttp.ClientResponse, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_bytes:
                preview = b"".join(chunks)[:10_000].decode("utf-8", "replace")
                self.on_bad_payload(preview, f"{url}: response over {self.max_bytes} bytes")
                raise OversizedPayload(f"{url}: response over {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
