"""Event builders for the domain tests: canonical dicts as the validated pipeline delivers them."""

from __future__ import annotations

import itertools
from typing import Any

from processors.domain.model import Event, FactDelta, FactKey
from processors.domain.reducer import Projector
from processors.domain.rules_config import default_rules

RULES = default_rules()
_ids = itertools.count(1)


def event(
    type_: str,
    payload: dict[str, Any],
    *,
    person: str | None = "p1",
    eid: str | None = None,
    at: str = "2024-03-05T10:00:00+08:00",
    town: str = "T1",
    village: str | None = "V1",
) -> Event:
    return {
        "event_id": eid or f"e{next(_ids):06d}",
        "type": type_,
        "version": 1,
        "occurred_at": at,
        "person_id": person,
        "town": town,
        "village": village,
        "source": "test",
        "payload": payload,
    }


def registered(*, grade: int = 3, hardship: bool = False, category: str = "physical",
               certificate_expires: str = "2030-01-01", birth_date: str = "1970-01-01", **kw: Any) -> Event:
    return event("person.registered", {
        "category": category, "grade": grade, "birth_date": birth_date,
        "hardship": hardship, "certificate_expires": certificate_expires,
    }, **kw)


def profile_changed(**fields: Any) -> Event:
    envelope = {k: fields.pop(k) for k in ("person", "eid", "at", "town", "village") if k in fields}
    return event("person.profile_changed", fields, **envelope)


def status(status_: str, effective: str, **kw: Any) -> Event:
    return event("person.status_changed", {"status": status_, "effective_date": effective}, **kw)


def payment(program: str = "living_subsidy", period: str = "2024-03", amount_fen: int = 50000, **kw: Any) -> Event:
    return event("payment.disbursed", {"program": program, "amount_fen": amount_fen, "period": period}, **kw)


def reversal(reverses: str, **kw: Any) -> Event:
    return event("payment.reversed", {"reverses": reverses, "reason": "error"}, **kw)


def visit(kind: str = "home_visit", hazards: list[str] | None = None, **kw: Any) -> Event:
    return event("visit.completed", {"visit_kind": kind, "visitor": "w1", "hazards": hazards or []}, **kw)


def need(need_id: str, need_: str = "employment", **kw: Any) -> Event:
    return event("need.registered", {"need_id": need_id, "need": need_}, **kw)


def service(service_: str = "rehab_service", need_id: str | None = None, **kw: Any) -> Event:
    payload: dict[str, Any] = {"service": service_}
    if need_id:
        payload["need_id"] = need_id
    return event("service.delivered", payload, **kw)


def placed(kind: str = "proportional", need_id: str | None = None, **kw: Any) -> Event:
    payload: dict[str, Any] = {"employer": "ACME", "placement_kind": kind}
    if need_id:
        payload["need_id"] = need_id
    return event("job.placed", payload, **kw)


def posted(positions: int = 3, **kw: Any) -> Event:
    kw.setdefault("person", None)
    return event("job.posted", {"employer": "ACME", "positions": positions}, **kw)


def run(events: list[Event], rules=RULES):
    """Apply events in order; return (aggregates by person, summed non-zero facts, all effects)."""
    projector = Projector(rules)
    aggs: dict[str, Any] = {}
    facts: dict[FactKey, FactDelta] = {}
    effects = []
    for ev in events:
        pid = ev.get("person_id")
        agg, eff = projector.apply(aggs.get(pid) if pid else None, ev)
        if pid:
            aggs[pid] = agg
        for key, delta in eff.fact_deltas:
            facts.setdefault(key, FactDelta()).add(delta)
        effects.append(eff)
    return aggs, {k: v for k, v in facts.items() if not v.is_zero()}, effects
