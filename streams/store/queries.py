"""Read queries over the store, parameterised so user input never reaches SQL unescaped.

Every value from a user (exchange names, times) goes through ClickHouse ``{name:Type}`` parameters;
only identifiers we own (the database name, checked at start-up) are formatted into the text. Filters
sit in an inner query and output formatting (chain times as integer seconds) in the outer one, because
ClickHouse aliases are visible in WHERE: ``toUnixTimestamp(t) AS t`` would otherwise change what a
filter on ``t`` compares. All chain times in results are integer seconds since the epoch.
"""

from __future__ import annotations

from typing import Any

from streams.store.backend import ClickHouseBackend

_OUTAGE_COLUMNS = """
    outage_id, version, exchange, scope, state,
    toUnixTimestamp(started_at) AS started_at,
    toUnixTimestamp(detected_at) AS detected_at,
    if(isNull(resolved_at), NULL, toUnixTimestamp(assumeNotNull(resolved_at))) AS resolved_at,
    expected_rate_per_hour, observed_gap_s, expected_count, observed_count, confidence, p_value,
    last_withdrawal_tx, last_withdrawal_chain, emitted_at, reason
"""

_STATUS_COLUMNS = """
    exchange, chain, state, detector_state, chain_state, outage_id,
    if(isNull(last_withdrawal_time), NULL, toUnixTimestamp(assumeNotNull(last_withdrawal_time)))
        AS last_withdrawal_time,
    head_number,
    if(isNull(head_time), NULL, toUnixTimestamp(assumeNotNull(head_time))) AS head_time,
    gap_s, expected_rate_per_hour, withdrawals_seen,
    toUnixTimestamp(updated_at) AS updated_at
"""

_ACTIVE_SINCE = "(isNull(resolved_at) OR toUnixTimestamp(assumeNotNull(resolved_at)) >= {since:UInt32})"
"""An incident still open, or resolved at or after ``since``: it was active at some time since then."""


def recent_outages(
    backend: ClickHouseBackend,
    exchange: str | None = None,
    limit: int = 100,
    since: int | None = None,
    latest: bool = False,
) -> list[dict[str, Any]]:
    """Outages, newest first: every state change (one row per outage_id and version), or with
    ``latest`` only the newest version of each outage. ``since`` (chain time, seconds) keeps the
    outages active at some time since then: still open, or resolved at or after it."""
    db = backend.database
    params: dict[str, Any] = {}
    conditions = []
    if exchange is not None:
        conditions.append("exchange = {exchange:String}")
        params["exchange"] = exchange
    if since is not None:
        params["since"] = int(since)
        if latest:
            conditions.append(_ACTIVE_SINCE)
        else:
            conditions.append(f"outage_id IN (SELECT outage_id FROM {db}.outages_latest WHERE {_ACTIVE_SINCE})")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    source = f"{db}.outages_latest" if latest else f"{db}.outage_events FINAL"
    sql = (
        f"SELECT {_OUTAGE_COLUMNS} FROM (SELECT * FROM {source} {where}) "
        f"ORDER BY detected_at DESC, exchange, outage_id, version LIMIT {int(limit)}"
    )
    return backend.query(sql, params)


def current_status(backend: ClickHouseBackend, exchange: str | None = None) -> list[dict[str, Any]]:
    """What is down right now: one row per (exchange, chain), from the ``current_status`` view.

    ``state`` is the chain's own state when it is stalled or its data is missing, else the detector's
    (``ok``, ``warming_up``, ``suspected``, ``open``, ``degraded``); ``chain_state`` is None when no
    chain status was ever reported.
    """
    where = "WHERE exchange = {exchange:String}" if exchange is not None else ""
    rows = backend.query(
        f"SELECT {_STATUS_COLUMNS} FROM (SELECT * FROM {backend.database}.current_status {where}) "
        "ORDER BY exchange, chain",
        {"exchange": exchange} if exchange is not None else {},
    )
    for row in rows:
        row["chain_state"] = row["chain_state"] or None
        row["outage_id"] = row["outage_id"] or None
    return rows


def withdrawals_per_minute(
    backend: ClickHouseBackend, exchange: str, start: int, end: int, chain: str | None = None
) -> list[dict[str, Any]]:
    """Canonical withdrawals (count, whole-unit amount over all assets) per minute in [start, end)."""
    params: dict[str, Any] = {"exchange": exchange, "start": int(start), "end": int(end)}
    chain_filter = ""
    if chain is not None:
        chain_filter = "AND chain = {chain:String}"
        params["chain"] = chain
    return backend.query(
        "SELECT toUnixTimestamp(m) AS minute, withdrawals, amount FROM ("
        "SELECT minute AS m, sum(withdrawals) AS withdrawals, sum(amount) AS amount "
        f"FROM {backend.database}.withdrawals_per_minute "
        "WHERE exchange = {exchange:String} AND minute >= {start:UInt32} AND minute < {end:UInt32} "
        f"{chain_filter} GROUP BY m) ORDER BY minute",
        params,
    )


def transfers_between(
    backend: ClickHouseBackend, exchange: str, start: int, end: int, limit: int = 1_000_000
) -> list[dict[str, Any]]:
    """The canonical transfers of one exchange with block time in [start, end), oldest first."""
    return backend.query(
        "SELECT chain, direction, toUnixTimestamp(block_time) AS block_time, block_number, tx_hash, "
        "log_index, asset, amount, decimals FROM ("
        f"SELECT * FROM {backend.database}.transfers FINAL "
        "WHERE exchange = {exchange:String} AND block_time >= {start:UInt32} AND block_time < {end:UInt32}"
        f") WHERE removed = 0 ORDER BY block_time, tx_hash, log_index LIMIT {int(limit)}",
        {"exchange": exchange, "start": int(start), "end": int(end)},
    )


def withdrawal_count(backend: ClickHouseBackend, exchange: str) -> int:
    """Distinct canonical withdrawals stored for one exchange."""
    rows = backend.query(
        f"SELECT count() AS n FROM {backend.database}.transfers FINAL "
        "WHERE exchange = {exchange:String} AND direction = 'withdrawal' AND removed = 0",
        {"exchange": exchange},
    )
    return int(rows[0]["n"])


def withdrawal_summary(backend: ClickHouseBackend, exchange: str) -> dict[str, float]:
    """Withdrawals (count, whole-unit amount) of one exchange as the per-minute view sums them."""
    rows = backend.query(
        "SELECT sum(withdrawals) AS withdrawals, sum(amount) AS amount "
        f"FROM {backend.database}.withdrawals_per_minute WHERE exchange = {{exchange:String}}",
        {"exchange": exchange},
    )
    return {"withdrawals": int(rows[0]["withdrawals"] or 0), "amount": float(rows[0]["amount"] or 0.0)}
