"""The detector state as JSON-ready values, and back: the parts a worker saves in its changelog table.

An exchange's state is saved in parts, one exchange-wide (:func:`exchange_value`) and one per chain
(:func:`chain_value`), because an ordinary withdrawal changes one chain's ~4 KB while the whole state of an
exchange on 10 chains is ~40 KB. The field names and positions are a stored format: a worker restarted on a
newer release reads the parts an older one saved, so fields are only ever added (read with a default).
"""

from __future__ import annotations

from typing import Any

from schemas.codec import decode_as, encode
from schemas.records import LabelSuggestion, OutageEvent
from streams.detection.baseline import GapTail, SeasonalRate
from streams.detection.budget import BudgetCheck
from streams.detection.policy import DetectionPolicy
from streams.detection.state import ChainTrack, ExchangeTrack, Incident, Withdrawal, event_key


def key_of(saved: str) -> str:
    """A payout's key as saved (a part written by an older release holds the whole event id, which has colons)."""
    return event_key(saved) if ":" in saved else saved


def incident_value(inc: Incident | None) -> Any:
    if inc is None:
        return None
    return [encode(inc.last).decode(), inc.resume_count, inc.resume_time, inc.resume_u, inc.recover]


def restore_incident(raw: Any) -> Incident | None:
    if raw is None:
        return None
    event, count, time, resume_u, recover = raw
    return Incident(decode_as(event, OutageEvent), count, time, resume_u, recover)


def last_payout_value(ex: ExchangeTrack) -> dict[str, Any]:
    return {"seq": ex.last_seq, "last": [ex.last_time, ex.last_tx, ex.last_chain], "snapshot": ex.snapshot}


def exchange_value(ex: ExchangeTrack) -> dict[str, Any]:
    """The exchange-wide part: last payout, snapshot, incident, suggestions and the names of its chains
    (a chain's part is loaded only if its name is listed here)."""
    return {
        "last": [ex.last_time, ex.last_tx, ex.last_chain],
        "snapshot": ex.snapshot,
        "last_seq": ex.last_seq,
        "incident": incident_value(ex.incident),
        "suggestions": {chain: encode(sg).decode() for chain, sg in ex.suggestions.items()},
        "chain_names": sorted(ex.chains),
    }


def chain_value(c: ChainTrack) -> dict[str, Any]:
    """One (exchange, chain) part. The detector adds the exchange's last payout and snapshot as they are
    (``"last"``, :func:`last_payout_value`), the only exchange-wide fields an ordinary withdrawal changes: a
    withdrawal then needs its chain's part saved and not the exchange-wide part as well."""
    return {
        "rate": c.rate.to_dict(), "tail": c.tail.to_dict(),
        "head": [c.head_number, c.head_time, c.interval_s, c.head_hash],
        "u": c.u_total, "recent": [[w.key, w.block, w.time, w.tx, w.u_at] for w in c.recent],
        "n": [c.withdrawals, c.exposure_s, c.pending_events, c.warm], "pending": c.pending,
        "ids": sorted(c.pending_keys), "tainted": c.tainted, "drop": [c.drop, c.drop_payouts, c.drop_m, c.drop_n],
        "incident": incident_value(c.incident), "quiet_from": c.quiet_from_u, "check": c.check.to_list(),
    }


def restore_exchange(exchange: str, data: dict[str, Any], chains: dict[str, dict[str, Any]],
             policy: DetectionPolicy) -> ExchangeTrack:
    ex = ExchangeTrack(exchange)
    # the newest last payout and snapshot: the exchange-wide part's, or a chain part's saved after it
    # (parts saved before the chain parts carried them have no count: -1, older than any)
    newest = {"seq": data.get("last_seq", -1), "last": data["last"], "snapshot": data["snapshot"]}
    for d in chains.values():
        carried = d.get("last") if d else None
        if carried is not None and carried["seq"] > newest["seq"]:
            newest = carried
    ex.last_seq = max(newest["seq"], 0)
    ex.last_time, ex.last_tx, ex.last_chain = newest["last"]
    ex.snapshot = dict(newest["snapshot"])
    ex.incident = restore_incident(data["incident"])
    ex.suggestions = {chain: decode_as(raw, LabelSuggestion) for chain, raw in data.get("suggestions", {}).items()}
    for name, d in chains.items():
        if not d:
            continue
        c = ChainTrack(
            name,
            SeasonalRate.from_dict(d["rate"], policy.seasonal_half_life_h, policy.seasonal_prior_hours),
            GapTail.from_dict(d["tail"]),
        )
        c.head_number, c.head_time, c.interval_s, c.head_hash = d["head"]
        c.u_total = d["u"]
        c.recent = [Withdrawal(key_of(w[0]), *w[1:]) for w in d["recent"]]
        c.withdrawals, c.exposure_s, c.pending_events, c.warm = d["n"]
        c.pending = [list(p) for p in d["pending"]]
        c.pending_keys = {key_of(i) for i in d["ids"]}
        c.tainted = d["tainted"]
        c.drop, c.drop_payouts, c.drop_m, c.drop_n = (*d["drop"], 0.0, 0.0)[:4]
        c.incident = restore_incident(d["incident"])
        c.quiet_from_u = d.get("quiet_from")  # absent from parts saved before it existed
        c.check = BudgetCheck.from_list(d.get("check"))
        ex.chains[name] = c
    return ex
