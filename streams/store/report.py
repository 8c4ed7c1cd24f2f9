"""What ``haltwatch status`` and ``haltwatch outages`` read and print.

The rows come from one of three places with the same shape: a ClickHouse server, embedded chdb (only
when no worker holds its folder: chdb allows one process per folder), or a running worker's JSON API,
which is how to read a worker's embedded store while it runs.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.store.backend import ClickHouseBackend, StoreError, open_backend
from streams.store.queries import current_status, recent_outages

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class SourceError(RuntimeError):
    """The store or the API could not answer; the message says what to do."""


def parse_since(text: str, now: float) -> int:
    """Seconds since the epoch from ``1700000000``, ``2026-11-24``, ``2026-11-24T17:00:00Z`` or an age
    such as ``90m``, ``6h``, ``7d`` (before ``now``). Times without a zone are UTC."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _RELATIVE.match(text)
    if match:
        return int(now) - int(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use seconds, an ISO date/time or an age like 6h or 7d") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def from_api(api: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """GET a worker's JSON API (``api`` like http://127.0.0.1:6066); None-valued params are left out."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{api.rstrip('/')}{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            data = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"{url}: {exc} (is the worker running, with its web API on that address?)") from None
    if not isinstance(data, list):
        raise SourceError(f"{url}: unexpected answer {str(data)[:200]}")
    return data


def from_store(url: str | None, chdb_path: Path, query: Callable[[ClickHouseBackend], Any]) -> Any:
    """Run ``query`` on the server at ``url``, or on embedded chdb at ``chdb_path`` when no URL."""
    try:
        backend = open_backend(url, chdb_path)
    except StoreError as exc:
        raise SourceError(f"{exc}\nWhile a worker runs, read through it instead: --api http://127.0.0.1:6066") from None
    try:
        return query(backend)
    except StoreError as exc:
        hint = ""
        if any(m in str(exc) for m in ("doesn't exist", "does not exist", "Code: 60.", "Code: 81.")):
            hint = "\nThe store has no haltwatch schema (yet): start the worker once to create it."
        said = str(exc) if hint else " ".join(str(exc).split(" (in: ")[0].split("Stack trace:")[0].split())
        raise SourceError(f"{said}{hint}") from None
    finally:
        backend.close()


def status_rows(
    exchange: str | None, api: str | None, url: str | None, chdb_path: Path
) -> list[dict[str, Any]]:
    """``current_status`` rows from the API when given, else from the store."""
    if api:
        return from_api(api, "/status", {"exchange": exchange})
    rows: list[dict[str, Any]] = from_store(url, chdb_path, lambda b: current_status(b, exchange))
    return rows


def outage_rows(
    exchange: str | None, since: int | None, all_versions: bool, limit: int,
    api: str | None, url: str | None, chdb_path: Path,
) -> list[dict[str, Any]]:
    """Outages (latest state each, or every version) from the API when given, else from the store."""
    if api:
        params = {"exchange": exchange, "since": since, "limit": limit, "latest": None if all_versions else 1}
        return from_api(api, "/outages", params)
    rows: list[dict[str, Any]] = from_store(
        url, chdb_path, lambda b: recent_outages(b, exchange, limit, since, latest=not all_versions)
    )
    return rows


def utc(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: int | None) -> str:
    """Compact duration: 45s, 12m05s, 3h02m, 2d03h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    sign, s = ("-", -s) if s < 0 else ("", s)
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{sign}{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{sign}{s // 86_400}d{s % 86_400 // 3600:02d}h"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned text columns, two spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in [list(headers), *rows]]


def status_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Exchanges x chains: state, last withdrawal, gap, expected rate, outage."""
    if not rows:
        return ["no status stored yet (the worker writes it once it has seen a chain head)"]
    body = []
    for r in rows:
        state = r["state"]
        if r.get("chain_state") in ("chain_stalled", "no_data") and r.get("detector_state") not in (None, "ok"):
            state = f"{state} ({r['detector_state']})"
        body.append([
            r["exchange"], r["chain"], state, utc(r["last_withdrawal_time"]), duration(r["gap_s"]),
            f"{r['expected_rate_per_hour']:.1f}", r.get("outage_id") or "-",
        ])
    return table(["EXCHANGE", "CHAIN", "STATE", "LAST WITHDRAWAL (UTC)", "GAP", "EXPECTED/H", "OUTAGE"], body)


def outage_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per outage (or version): state, scope, start, detection, resolution, confidence."""
    if not rows:
        return ["no outages stored"]
    body = [
        [
            r["exchange"], r["state"], f"v{r['version']}", ",".join(r["scope"]), utc(r["started_at"]),
            utc(r["detected_at"]), utc(r["resolved_at"]), f"{r['confidence']:.6f}", r["outage_id"],
        ]
        for r in rows
    ]
    headers = ["EXCHANGE", "STATE", "VER", "SCOPE", "STARTED (UTC)", "DETECTED", "RESOLVED", "CONFIDENCE", "ID"]
    return table(headers, body)
