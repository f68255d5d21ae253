"""Deterministic, varied event streams for the store tests (canonical dicts, already valid).

Covers every counted kind, several towns, times near midnight with different UTC offsets (so the
Asia/Shanghai date differs from the written one), payments reversed after and BEFORE they
arrive, duplicate payments, out-of-range amounts, payments after cancellation, hazard visits,
needs with and without fulfilment, postings, and producer re-sends (same event_id again later).
"""

from __future__ import annotations

import itertools
import random
import zlib
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from processors.domain.counts import reference_counts
from processors.domain.model import Consumed

TOWNS = ("东城街道", "西城镇", "南山镇", "北湖街道")
VILLAGES = ("一村", "二村", "三社区", None)
CATEGORIES = ("visual", "hearing", "speech", "physical", "intellectual", "mental", "multiple")
PROGRAMS = ("living_subsidy", "nursing_subsidy", "medical_insurance_subsidy", "pension_insurance_subsidy",
            "self_employed_pension_subsidy", "accident_insurance", "rehab_subsidy", "education_aid")
SERVICES = ("assistive_device_fitting", "autism_child_rehab", "rehab_service", "vocational_training",
            "accessibility_modification", "mental_health_settlement", "online_ward", "group_counseling",
            "education_support")
VISIT_KINDS = ("home_visit", "rehab_in_village", "family_doctor", "assessment")
HAZARDS = ("living_alone_no_caregiver", "unsafe_housing", "mental_health_crisis", "abuse_or_neglect",
           "medical_emergency")
PLACEMENTS = ("proportional", "centralized", "self_employed", "sheltered", "public_welfare", "flexible")
NEEDS = ("employment", "assistive_device", "rehabilitation", "education", "accessibility_modification", "care")
OFFSETS = (timezone(timedelta(hours=8)), UTC, timezone(timedelta(hours=-5)))


class Gen:
    def __init__(self, seed: int = 7, persons: int = 60, start: str = "2024-01-01") -> None:
        self.rnd = random.Random(seed)
        self.n_persons = persons
        self.t0 = datetime.fromisoformat(start + "T00:00:00+08:00")
        self.seq = 0
        self.events: list[dict[str, Any]] = []
        self.payments: list[dict[str, Any]] = []
        self.needs: list[tuple[str, str]] = []  # (person, need_id)

    # --- builders ---------------------------------------------------------------------------
    def _eid(self) -> str:
        self.seq += 1
        return f"ev-{self.seq:07d}"

    def _at(self, day: int) -> str:
        rnd = self.rnd
        moment = self.t0 + timedelta(days=day, minutes=rnd.choice((5, 30, 600, 1410, 1439)))
        return moment.astimezone(rnd.choice(OFFSETS)).isoformat()

    def event(self, type_: str, person: str | None, payload: dict[str, Any], day: int,
              town: str | None = None) -> dict[str, Any]:
        rnd = self.rnd
        evt = {
            "event_id": self._eid(),
            "type": type_,
            "version": 1,
            "occurred_at": self._at(day),
            "person_id": person,
            "town": town or rnd.choice(TOWNS),
            "village": rnd.choice(VILLAGES),
            "source": "gen",
            "payload": payload,
        }
        self.events.append(evt)
        return evt

    def person(self, i: int) -> str:
        return f"p{i:05d}"

    # --- a full stream ------------------------------------------------------------------------
    def stream(self, n_events: int = 600, days: int = 200) -> list[dict[str, Any]]:
        rnd = self.rnd
        for i in range(self.n_persons):
            self.event("person.registered", self.person(i), {
                "category": rnd.choice(CATEGORIES), "grade": rnd.randint(1, 4),
                "birth_date": f"19{rnd.randint(40, 99)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}",
                "hardship": rnd.random() < 0.3,
                "certificate_expires": (self.t0 + timedelta(days=rnd.randint(30, 900))).date().isoformat(),
            }, day=rnd.randint(0, 20))
        while len(self.events) < n_events:
            self.one(rnd.randint(0, days))
        return self.events

    def one(self, day: int) -> None:
        rnd = self.rnd
        pid = self.person(rnd.randrange(self.n_persons))
        r = rnd.random()
        if r < 0.25:
            program = rnd.choice(PROGRAMS)
            amount = rnd.choice((50_000, 30_000, 120_000, 2_000, 9_999_999, 80_000))
            period = f"2024-{rnd.randint(1, 6):02d}"
            evt = self.event("payment.disbursed", pid, {"program": program, "amount_fen": amount,
                                                        "period": period}, day)
            self.payments.append(evt)
            if rnd.random() < 0.15:  # same program + period again: duplicate_payment
                self.payments.append(self.event("payment.disbursed", pid, {
                    "program": program, "amount_fen": amount, "period": period}, day + 1))
        elif r < 0.32 and self.payments:
            target = rnd.choice(self.payments)
            self.event("payment.reversed", target["person_id"], {"reverses": target["event_id"],
                                                                  "reason": "wrong"}, day)
        elif r < 0.36:
            # reversal BEFORE its payment: reserve the payment's id now
            reversal = self.event("payment.reversed", pid, {"reverses": "", "reason": "early"}, day)
            payment = self.event("payment.disbursed", pid, {"program": rnd.choice(PROGRAMS),
                                                            "amount_fen": 40_000, "period": "2024-05"}, day)
            reversal["payload"]["reverses"] = payment["event_id"]
        elif r < 0.50:
            hazards = rnd.sample(HAZARDS, k=rnd.choice((0, 0, 0, 1, 2)))
            self.event("visit.completed", pid, {"visit_kind": rnd.choice(VISIT_KINDS), "visitor": "w1",
                                                "hazards": hazards}, day)
        elif r < 0.60:
            need_id = f"n-{self.seq}"
            self.needs.append((pid, need_id))
            self.event("need.registered", pid, {"need_id": need_id, "need": rnd.choice(NEEDS)}, day)
        elif r < 0.70:
            payload: dict[str, Any] = {"service": rnd.choice(SERVICES)}
            if self.needs and rnd.random() < 0.5:
                owner, need_id = rnd.choice(self.needs)
                pid = owner
                payload["need_id"] = need_id
            self.event("service.delivered", pid, payload, day)
        elif r < 0.76:
            payload = {"employer": f"emp{rnd.randint(1, 9)}", "placement_kind": rnd.choice(PLACEMENTS)}
            if self.needs and rnd.random() < 0.3:
                owner, need_id = rnd.choice(self.needs)
                pid = owner
                payload["need_id"] = need_id
            self.event("job.placed", pid, payload, day)
        elif r < 0.82:
            self.event("job.posted", None, {"employer": f"emp{rnd.randint(1, 9)}",
                                            "positions": rnd.randint(1, 12)}, day)
        elif r < 0.86:
            self.event("person.status_changed", pid, {
                "status": rnd.choice(("cancelled", "deceased", "active")),
                "effective_date": (self.t0 + timedelta(days=day)).date().isoformat()}, day)
        elif r < 0.90:
            self.event("person.profile_changed", pid, {"grade": rnd.randint(1, 4),
                                                       "hardship": rnd.random() < 0.5}, day)
        elif r < 0.95 and self.events:
            # producer re-send: the same event again, later in the stream
            self.events.append(dict(rnd.choice(self.events)))
        else:
            self.event("visit.completed", pid, {"visit_kind": "home_visit", "visitor": "w2",
                                                "hazards": []}, day)


def partition_of(evt: dict[str, Any], partitions: int) -> int:
    key = evt.get("person_id") or evt["payload"].get("employer") or ""
    return zlib.crc32(key.encode()) % partitions


def to_records(events: list[dict[str, Any]], partitions: int = 3, start_offset: int = 0) -> list[Consumed]:
    """Records as a consumer would see them: per-key partitions, offsets in arrival order."""
    next_offset = [start_offset] * partitions
    out = []
    for evt in events:
        p = partition_of(evt, partitions)
        out.append(Consumed(p, next_offset[p], evt))
        next_offset[p] += 1
    return out


def batches(records: list[Consumed], size: int) -> list[list[Consumed]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


# --- checks shared by the SQLite, PostgreSQL and ClickHouse store tests ---------------------
KIND_KEYS: dict[str, tuple[str | None, ...]] = {
    "payment": (None, *PROGRAMS[:4]),
    "service": (None, *SERVICES[:3]),
    "visit": (None, *VISIT_KINDS),
    "job": (None, *PLACEMENTS[:2]),
    "need": (None, *NEEDS[:2]),
    "person": (None, "physical", "mental"),
    "posting": (None, "", "x"),
}
RANGES = ((None, None), ("2024-02-01", None), (None, "2024-03-31"), ("2024-03-15", "2024-05-02"),
          ("2024-04-10", "2024-04-10"))


def check_counts(store: Any, events: list[dict[str, Any]]) -> int:
    checked = 0
    for kind, keys in KIND_KEYS.items():
        for key, town, (lo, hi) in itertools.product(keys, (None, *TOWNS[:2]), RANGES):
            got = store.counts(kind, key=key, date_from=lo and date.fromisoformat(lo),
                               date_to=hi and date.fromisoformat(hi), town=town)
            want = reference_counts(events, kind, key, lo, hi, town)
            assert got == want, (kind, key, town, lo, hi)
            checked += 1
    return checked
