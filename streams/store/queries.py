"""Read queries over the store, parameterised so user input never reaches SQL unescaped."""

from __future__ import annotations

from typing import Any

from streams.store.backend import ClickHouseBackend

_OUTAGE_COLUMNS = """
    outage_id, version, exchange, scope, state,
    toUnixTimestamp(started_at) AS started_at,
    toUnixTimestamp(detected_at) AS detected_at,
    if(isNull(resolved_at), NULL, toUnixTimestamp(assumeNotNull(resolved_at))) AS resolved_at,
    expected_rate_per_hour, observed_gap_s, confidence, p_value,
    last_withdrawal_tx, last_withdrawal_chain, emitted_at, reason
"""


def recent_outages(backend: ClickHouseBackend, exchange: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Outage state changes, newest first; one row per (outage_id, version)."""
    where = "WHERE exchange = {exchange:String}" if exchange else ""
    sql = (
        f"SELECT {_OUTAGE_COLUMNS} FROM {backend.database}.outage_events FINAL {where} "
        f"ORDER BY detected_at DESC, outage_id, version LIMIT {int(limit)}"
    )
    return backend.query(sql, {"exchange": exchange} if exchange else {})


def withdrawal_count(backend: ClickHouseBackend, exchange: str) -> int:
    """Distinct canonical withdrawals stored for one exchange."""
    rows = backend.query(
        f"SELECT count() AS n FROM {backend.database}.transfers FINAL "
        "WHERE exchange = {exchange:String} AND direction = 'withdrawal' AND removed = 0",
        {"exchange": exchange},
    )
    return int(rows[0]["n"])
