"""Repair of the per-minute withdrawal summary after an insert that may have half-landed.

ClickHouse writes an insert's rows to ``transfers`` first and pushes them to the materialized view
afterwards (18.16 even holds the view's share until the insert ends). A server or client that dies in
between leaves rows in ``transfers`` that the view never counted, and the sink's read-before-write
check then rightly refuses to insert them again. So whenever a batch turns out to be already stored
(a retry after a failed insert, or a Kafka redelivery after a restart), the minutes it covers are
recomputed from ``transfers`` FINAL and the difference is added to the summary. The correction is
additive (SummingMergeTree sums it in), so running it twice adds nothing, and it needs no DELETE.

It must not race with inserts of the same exchanges: the worker runs it on its single insert thread,
and every exchange is written by the one worker that owns its partition.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from streams.store.backend import ClickHouseBackend

log = logging.getLogger(__name__)

UNITS = "if(decimals < 0, 0, toFloat64OrZero(amount) / pow(10, decimals))"
"""Whole units of a raw amount (decimals -1 = unknown: amount 0), as the view computes them."""


def repair_withdrawals_per_minute(
    backend: ClickHouseBackend, spans: Sequence[tuple[str, int, int]], max_spans: int = 200
) -> int:
    """Make the summary equal ``transfers`` FINAL over the minutes of each (exchange, first, last) span.

    Returns the number of (minute, exchange, chain, asset) rows that needed a correction.
    """
    db = backend.database
    corrected = 0
    for start in range(0, len(spans), max_spans):
        chunk = spans[start:start + max_spans]
        params: dict[str, Any] = {}
        raw_terms, summary_terms = [], []
        for j, (exchange, lo, hi) in enumerate(chunk):
            first, end = lo - lo % 60, hi - hi % 60 + 60  # whole minutes
            params.update({f"e{j}": exchange, f"a{j}": first, f"b{j}": end})
            raw_terms.append(f"(exchange = {{e{j}:String}} AND block_time >= {{a{j}:UInt32}} "
                             f"AND block_time < {{b{j}:UInt32}})")
            summary_terms.append(f"(exchange = {{e{j}:String}} AND minute >= {{a{j}:UInt32}} "
                                 f"AND minute < {{b{j}:UInt32}})")
        diff = (
            "SELECT toUnixTimestamp(m) AS minute, ex AS exchange, ch AS chain, at AS asset,"
            " sum(w) AS withdrawals, sum(a) AS amount, sum(abs(a)) AS scale "
            "FROM ("
            "  SELECT toStartOfMinute(block_time) AS m, exchange AS ex, chain AS ch, asset AS at,"
            f"   toInt64(count()) AS w, sum({UNITS}) AS a"
            f"  FROM (SELECT * FROM {db}.transfers FINAL WHERE {' OR '.join(raw_terms)})"
            "  WHERE direction = 'withdrawal' AND removed = 0 GROUP BY m, ex, ch, at"
            "  UNION ALL"
            "  SELECT minute AS m, exchange AS ex, chain AS ch, asset AS at,"
            "   -toInt64(sum(withdrawals)) AS w, -sum(amount) AS a"
            f"  FROM {db}.withdrawals_per_minute WHERE {' OR '.join(summary_terms)} GROUP BY m, ex, ch, at"
            ") GROUP BY m, ex, ch, at "
            "HAVING withdrawals != 0 OR abs(amount) > 1e-9 * greatest(scale, 1.0)"  # float sums differ in order
        )
        rows = backend.query(diff, params)
        if rows:
            for row in rows:
                del row["scale"]
            backend.insert("withdrawals_per_minute", rows)
            log.warning("withdrawals_per_minute: corrected %d minute rows the view had missed (%s)",
                        len(rows), ", ".join(sorted({str(r["exchange"]) for r in rows}))[:200])
            corrected += len(rows)
    return corrected
