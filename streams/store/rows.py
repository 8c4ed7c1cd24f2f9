"""Map contract records to ClickHouse rows (column name → value), one function per table."""

from __future__ import annotations

from typing import Any

from schemas.records import (
    BlockTransfers,
    ChainHead,
    ChainStatus,
    CorrelatedIncident,
    LabelSuggestion,
    OutageEvent,
    TransferEvent,
    events_of,
)


def transfer_row(t: TransferEvent, ingest_version: int) -> dict[str, Any]:
    return {
        "exchange": t.exchange,
        "chain": t.chain,
        "direction": t.direction.value,
        "block_time": t.block_time,
        "block_number": t.block_number,
        "block_hash": t.block_hash,
        "tx_hash": t.tx_hash,
        "log_index": t.log_index,
        "asset": t.asset,
        "amount": t.amount,
        "decimals": t.decimals,
        "from_address": t.from_address,
        "to_address": t.to_address,
        "removed": int(t.removed),
        "ingest_version": ingest_version,
    }


def transfer_rows(record: TransferEvent | BlockTransfers, ingest_version: int) -> list[dict[str, Any]]:
    """The rows of a transfer, or of every transfer a block record holds (its head is stored from the heads
    topic); ``ingest_version`` is the record's offset, shared by a block record's transfers."""
    return [transfer_row(t, ingest_version) for t in events_of(record) if isinstance(t, TransferEvent)]


def head_row(h: ChainHead) -> dict[str, Any]:
    return {
        "chain": h.chain,
        "number": h.number,
        "hash": h.hash,
        "parent_hash": h.parent_hash,
        "block_time": h.block_time,
        "received_at": h.received_at,
    }


def outage_row(o: OutageEvent) -> dict[str, Any]:
    return {
        "outage_id": o.outage_id,
        "version": o.version,
        "exchange": o.exchange,
        "scope": list(o.scope),
        "state": o.state.value,
        "started_at": o.started_at,
        "detected_at": o.detected_at,
        "resolved_at": o.resolved_at,
        "expected_rate_per_hour": o.expected_rate_per_hour,
        "observed_gap_s": o.observed_gap_s,
        "expected_count": o.expected_count,
        "observed_count": o.observed_count,
        "confidence": o.confidence,
        "p_value": o.p_value,
        "last_withdrawal_tx": o.last_withdrawal_tx or "",
        "last_withdrawal_chain": o.last_withdrawal_chain or "",
        "emitted_at": o.emitted_at,
        "reason": o.reason,
    }


def correlated_row(c: CorrelatedIncident) -> dict[str, Any]:
    keys = sorted(c.common)
    return {
        "incident_id": c.incident_id,
        "version": c.version,
        "exchanges": list(c.exchanges),
        "outage_ids": list(c.outage_ids),
        "started_at": c.started_at,
        "detected_at": c.detected_at,
        "common_keys": keys,
        "common_values": [c.common[k] for k in keys],
        "likely_cause": c.likely_cause,
        "emitted_at": c.emitted_at,
    }


def chain_status_row(s: ChainStatus) -> dict[str, Any]:
    return {
        "chain": s.chain,
        "state": s.state.value,
        "last_number": s.last_number,
        "last_block_time": s.last_block_time,
        "last_received_at": s.last_received_at,
        "node_head_number": s.node_head_number,
        "reason": s.reason,
        "emitted_at": s.emitted_at,
    }


def suggestion_row(s: LabelSuggestion) -> dict[str, Any]:
    return {
        "exchange": s.exchange,
        "chain": s.chain,
        "address": s.address,
        "suggested_role": s.suggested_role,
        "funded_by": s.funded_by,
        "funded_at": s.funded_at,
        "funding_tx": s.funding_tx,
        "distinct_recipients": s.distinct_recipients,
        "payouts": s.payouts,
        "detected_at": s.detected_at,
        "emitted_at": s.emitted_at,
        "top_ups": s.top_ups,
        "sweeps": s.sweeps,
        "steadiness": s.steadiness,
        "evidence": s.evidence,
    }
