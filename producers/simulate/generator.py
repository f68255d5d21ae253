"""A seeded, reproducible 奉化区 district: registered disabled persons and everything that happens to them.

``generate(SimConfig(...))`` plans the whole history in compact tuples (persons 2008-2023, a fully
active last quarter of 2023, the first half of 2024 and optionally a tail of later months), then
yields canonical event dicts (CONTRACT.md §1) in non-decreasing ``occurred_at`` order.

With ``calibrate="2024H1"`` the events dated 2024-01-01..2024-06-30 reproduce every row of
``h1-report.csv`` exactly under the /api/counts rules (distinct non-reversed events, distinct
persons, exact fen).  Everything is drawn from ``random.Random`` instances seeded from the config
(never global state or the clock): the same config gives the same bytes.  The H1 part does not
depend on ``tail_months``; the tail has its own random stream.

So that the need warnings judged on the demo data are a caseworker's work list rather than an
artefact of missing history: home visits are recorded from 2022 (when the visit app went live) at
the calibrated half-year's rate and go to the households the ``visit_overdue`` rule watches,
longest-waiting first; certificates are renewed around their expiry or the registration is
cancelled a few months after it lapsed; hardship goes with severity, and grades 1-2 are about as
many as the nursing subsidy reaches.  ``tests/unit/producers/test_simulate.py`` checks the
warnings by folding the events through ``processors.domain``.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from producers.simulate import geo
from producers.simulate.names import person_identity
from producers.simulate.report import ReportRow, load_report

BASE_PERSONS = 20_000
HISTORY_START = date(2008, 1, 1).toordinal()
Q4_START = date(2023, 10, 1).toordinal()
H1_START = date(2024, 1, 1).toordinal()
H1_END = date(2024, 6, 30).toordinal()
DAY = 86_400
WORK_FROM, WORK_TO = 8 * 3600 + 1800, 17 * 3600 + 1800

# CONTRACT §2 default ranges, in fen
RANGES: dict[str, tuple[int, int]] = {
    "living_subsidy": (10_000, 100_000),
    "nursing_subsidy": (10_000, 100_000),
    "medical_insurance_subsidy": (5_000, 200_000),
    "pension_insurance_subsidy": (5_000, 200_000),
    "self_employed_pension_subsidy": (10_000, 500_000),
    "accident_insurance": (1_000, 20_000),
    "rehab_subsidy": (5_000, 2_000_000),
    "education_aid": (10_000, 2_000_000),
}
CATEGORIES = ("visual", "hearing", "speech", "physical", "intellectual", "mental", "multiple")
# category weights per age group: child, adult <45, adult 45-64, elderly
_CAT_CUM = [
    list(_acc) for _acc in (
        (0.04, 0.16, 0.28, 0.42, 0.72, 0.94, 1.0),
        (0.10, 0.20, 0.22, 0.62, 0.77, 0.91, 1.0),
        (0.11, 0.22, 0.235, 0.685, 0.765, 0.895, 1.0),
        (0.15, 0.33, 0.34, 0.80, 0.83, 0.89, 1.0),
    )
]
_GRADE_W = {  # grades 1-2 are ~39 % of the active registry: a little more than receive the nursing subsidy
    "physical": (0.115, 0.195, 0.305, 0.385), "visual": (0.215, 0.175, 0.265, 0.345),
    "hearing": (0.085, 0.185, 0.315, 0.415), "speech": (0.175, 0.175, 0.315, 0.335),
    "intellectual": (0.135, 0.32, 0.365, 0.18), "mental": (0.105, 0.36, 0.355, 0.18),
    "multiple": (0.37, 0.32, 0.18, 0.13),
}
HAZARDS = ("living_alone_no_caregiver", "unsafe_housing", "mental_health_crisis", "abuse_or_neglect",
           "medical_emergency")
PLACEMENT_KINDS = ("proportional", "centralized", "self_employed", "sheltered", "public_welfare", "flexible")
_PLACEMENT_W = (45, 10, 15, 8, 10, 12)

# record codes
REG, PROFILE, STATUS, VISIT, PAY, REV, NEED, SERVICE, PLACED, POSTED = range(10)
_TYPES = ("person.registered", "person.profile_changed", "person.status_changed", "visit.completed",
          "payment.disbursed", "payment.reversed", "need.registered", "service.delivered", "job.placed",
          "job.posted")
_SOURCES = ("simulate/registry", "simulate/registry", "simulate/registry", "simulate/visit-app",
            "simulate/subsidy", "simulate/subsidy", "simulate/services", "simulate/services",
            "simulate/employment", "simulate/employment")
_TIMES = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+08:00" for s in range(DAY)]


class CalibrationError(ValueError):
    """The population is too small (or the report impossible) for an exact calibration."""


@dataclass(frozen=True)
class SimConfig:
    seed: int = 42
    persons: int = BASE_PERSONS          # persons registered 2008-2023 (H1 adds the new registrations)
    calibrate: str | None = None         # "2024H1": reproduce h1-report.csv exactly
    tail_months: int = 0                 # months after June 2024 to simulate too (live demos)
    id_number_fraction: float = 0.0      # share of persons whose events carry id_number, not person_id
    resend_fraction: float = 0.0         # share of events emitted twice (same event_id): producer retries
    report_path: str | Path | None = None  # h1-report.csv to calibrate on (default: packaged copy)

    def __post_init__(self) -> None:
        if self.calibrate not in (None, "2024H1"):
            raise ValueError(f"calibrate: unknown period {self.calibrate!r} (supported: 2024H1)")
        if self.persons < 1:
            raise ValueError("persons: must be >= 1")
        if not 0 <= self.tail_months <= 600:
            raise ValueError("tail_months: must be 0..600")
        for name in ("id_number_fraction", "resend_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1")


def generate(config: SimConfig | None = None) -> Iterator[dict[str, Any]]:
    """Plan the district (raises ``CalibrationError``/``ValueError`` now) and return the event stream."""
    world = _World(config or SimConfig())
    world.plan()
    return world.events()


# ---- small helpers -----------------------------------------------------------------------------------
_DATE_CACHE: dict[int, str] = {}


def _ds(ordinal: int) -> str:
    text = _DATE_CACHE.get(ordinal)
    if text is None:
        text = _DATE_CACHE[ordinal] = date.fromordinal(ordinal).isoformat()
    return text


def _plus_years(ordinal: int, years: int) -> int:
    d = date.fromordinal(ordinal)
    try:
        return d.replace(year=d.year + years).toordinal()
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28).toordinal()


def _month_bounds(year: int, month: int) -> tuple[int, int]:
    first = date(year, month, 1).toordinal()
    nxt = date(year + month // 12, month % 12 + 1, 1).toordinal()
    return first, nxt - 1


def _months(lo: int, hi: int) -> list[tuple[int, int]]:
    d, end = date.fromordinal(lo), date.fromordinal(hi)
    out = []
    y, m = d.year, d.month
    while (y, m) <= (end.year, end.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _ri(rng: random.Random, lo: int, hi: int) -> int:
    """rng.randint without its argument checking (hot path)."""
    return lo + int(rng.random() * (hi - lo + 1))


def _weekend(ordinal: int) -> bool:
    return (ordinal - 1) % 7 >= 5


def _workday(rng: random.Random, lo: int, hi: int) -> int:
    d = _ri(rng, lo, hi)
    for _ in range(2):
        if not _weekend(d) or hi - lo < 3:
            break
        d = _ri(rng, lo, hi)
    return d


def _payday(year: int, month: int, dom: int) -> int:
    d = date(year, month, dom).toordinal()
    while _weekend(d):
        d -= 1
    return d


def _largest_remainder(total: int, weights: list[int]) -> list[int]:
    s = sum(weights)
    if s == 0:
        return [0] * len(weights)
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def allocate(total: int, bases: list[int], lo: int, hi: int, rng: random.Random, unit: int = 100) -> list[int]:
    """Integers in [lo, hi], shaped like ``bases``, summing exactly to ``total``; steps of ``unit``
    (whole yuan for fen) except one final sub-unit remainder.  Raises CalibrationError if impossible."""
    n = len(bases)
    if n == 0:
        if total:
            raise CalibrationError(f"cannot place {total} on no items")
        return []
    if not lo * n <= total <= hi * n:
        raise CalibrationError(f"cannot split {total} into {n} items of {lo}..{hi}")
    ratio = total / max(1, sum(bases))
    out = [min(hi, max(lo, int(b * ratio) // unit * unit)) for b in bases]
    rest = total - sum(out)
    order = list(range(n))
    rng.shuffle(order)
    while abs(rest) >= unit:
        sign = 1 if rest > 0 else -1
        per = max(1, abs(rest) // unit // n)
        moved = False
        for i in order:
            if abs(rest) < unit:
                break
            want = min(per, abs(rest) // unit) * unit * sign
            new = min(hi, max(lo, out[i] + want))
            if new != out[i]:
                rest -= new - out[i]
                out[i] = new
                moved = True
        if not moved:
            break
    if rest:
        for i in order:
            if lo <= out[i] + rest <= hi:
                out[i] += rest
                rest = 0
                break
    if rest:
        raise CalibrationError(f"cannot split {total} into {n} items of {lo}..{hi}")
    return out


def _id_check(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


# ---- the population ------------------------------------------------------------------------------------
class Person:
    __slots__ = ("idx", "pid", "idn", "birth", "group", "category", "grade", "hardship", "reg", "expires",
                 "town", "village", "changes", "moves", "end", "end_status", "report", "prio_l", "prio_n",
                 "tier", "mutable", "name", "phone")

    def __init__(self) -> None:
        self.changes: list[tuple[int, int, dict[str, Any], tuple[str, str] | None]] | None = None
        self.mutable = False  # some change touches category, grade or hardship
        self.moves: list[tuple[int, str, str]] | None = None
        self.end: int | None = None
        self.end_status = ""
        self.report: int | None = None
        self.idn: str | None = None

    def state(self, day: int) -> tuple[str, int, bool]:
        """(category, grade, hardship) after the changes dated on or before ``day``."""
        c, g, h = self.category, self.grade, self.hardship
        if self.changes:
            for d, _, ch, _ in self.changes:
                if d > day:
                    break
                c = ch.get("category", c)
                g = ch.get("grade", g)
                h = ch.get("hardship", h)
        return c, g, h

    def place(self, day: int) -> tuple[str, str]:
        town, village = self.town, self.village
        if self.moves:
            for d, t, v in self.moves:
                if d > day:
                    break
                town, village = t, v
        return town, village

    def last_day(self, hi: int) -> int:
        return hi if self.end is None else min(hi, self.end - 1)


Cand = tuple[Person, float, int, int]  # person, weight, first possible day, last possible day
Pred = Callable[[Person, str, int, bool, float], float]


def _age(p: Person, day: int) -> float:
    return (day - p.birth) / 365.25


# eligibility/weight of a person for a program or service: (p, category, grade, hardship, age) -> weight
def _any(p: Person, c: str, g: int, h: bool, age: float) -> float:
    return 1.0


PAYMENT_PREDS: dict[str, Pred] = {
    "medical_insurance_subsidy": lambda p, c, g, h, a: 3.0 if (h or g <= 2) else 1.0,
    "pension_insurance_subsidy": lambda p, c, g, h, a: (2.0 if h else 1.0) if 16 <= a < 60 else 0.0,
    "self_employed_pension_subsidy": lambda p, c, g, h, a: 1.0 if (20 <= a < 60 and g >= 3) else 0.0,
    "accident_insurance": lambda p, c, g, h, a: 1.0 if a < 81 else 0.0,
    "rehab_subsidy": lambda p, c, g, h, a: 5.0 if a < 18 else (2.0 if c == "physical" else 1.0),
    "education_aid": lambda p, c, g, h, a: 5.0 if 6 <= a < 25 else (1.0 if 28 <= a < 56 else 0.0),
}
# months of the year a one-off program is paid in, in the calibrated half-year
H1_WINDOWS = {
    "medical_insurance_subsidy": (1, 4), "pension_insurance_subsidy": (3, 6),
    "self_employed_pension_subsidy": (4, 6), "accident_insurance": (1, 3), "rehab_subsidy": (1, 6),
    "education_aid": (2, 6),
}
# service -> (predicate, linked need kind, share of new recipients with a prior need, share fulfilling open needs)
SERVICE_SPECS: dict[str, tuple[Pred, str | None, float, float]] = {
    "assistive_device_fitting": (
        lambda p, c, g, h, a: (1.5 if a >= 60 else 1.0) if c in ("physical", "visual", "hearing", "multiple")
        else 0.0, "assistive_device", 0.35, 0.4),
    "autism_child_rehab": (
        lambda p, c, g, h, a: 1.0 if (a < 17 and c in ("mental", "intellectual", "speech", "multiple")) else 0.0,
        "rehabilitation", 0.5, 0.4),
    "rehab_service": (_any, "rehabilitation", 0.2, 0.4),
    "vocational_training": (lambda p, c, g, h, a: 1.0 if (16 <= a < 56 and g >= 2) else 0.0, None, 0.0, 0.0),
    "accessibility_modification": (
        lambda p, c, g, h, a: 1.0 if (h and g <= 3 and c in ("physical", "visual", "multiple")) else 0.0,
        "accessibility_modification", 0.0, 1.0),
    "mental_health_settlement": (
        lambda p, c, g, h, a: 1.0 if c == "mental" else (0.3 if c == "multiple" and a >= 16 else 0.0),
        None, 0.0, 0.0),
    "online_ward": (lambda p, c, g, h, a: 1.0 if (c == "physical" and g == 1) else 0.0, "rehabilitation", 0.5, 0.2),
    "group_counseling": (
        lambda p, c, g, h, a: 1.0 if (c in ("mental", "intellectual") and g >= 3 and 16 <= a < 66) else 0.0,
        "care", 0.2, 0.4),
    "education_support": (lambda p, c, g, h, a: 1.0 if 3 <= a < 23 else 0.0, "education", 0.5, 0.4),
}
NEED_PREDS: dict[str, Pred] = {
    "employment": lambda p, c, g, h, a: (3.0 if g >= 3 else 1.0) if (18 <= a < 58 and g >= 2) else 0.0,
    "assistive_device": SERVICE_SPECS["assistive_device_fitting"][0],
    "rehabilitation": _any,
    "education": SERVICE_SPECS["education_support"][0],
    "accessibility_modification": SERVICE_SPECS["accessibility_modification"][0],
    "care": lambda p, c, g, h, a: 1.0 if (g <= 2 and a >= 60) else 0.0,
}
# needs registered and not (yet) met, per half-year at the base scale
UNMET_H1 = {"assistive_device": 20, "rehabilitation": 15, "care": 12, "education": 8, "accessibility_modification": 70}
# base-scale half-year counts of what the report does not publish
FREE_H1 = {("service", "rehab_service"): 900, ("service", "vocational_training"): 150,
           ("service", "education_support"): 60, ("service", "accessibility_modification"): 0,
           ("visit", "family_doctor"): 1600, ("visit", "assessment"): 41}
RENEWED = 0.96  # share of expiring certificates renewed (the rest lapse and are cancelled)
VISITS_FROM = date(2022, 1, 1).toordinal()  # the visit app went live: no home visit records before
VISIT_JITTER = 45.0  # days: caseworkers work the list in about, not exactly, the order of waiting
OTHER_VISITS = 0.05  # share of home visits to households the visit_overdue rule does not watch
REVERSAL_REASONS = ("重复发放,已追回", "系统重复导入,冲正", "银行退回后重发,冲正原记录")


@dataclass
class Target:
    events: int | None = None
    amount_fen: int | None = None
    positions: int | None = None
    villages: tuple[int, int] | None = None  # (towns, villages) for rehab_in_village


def _targets_from_report(rows: list[ReportRow]) -> dict[tuple[str, str], Target]:
    out: dict[tuple[str, str], Target] = {}
    for row in rows:
        if row.persons is not None and row.events is not None and row.persons != row.events:
            raise CalibrationError(f"{row.metric}: persons != events is not supported by the simulator")
        spread = None
        found = re.search(r"in (\d+) towns and (\d+) villages", row.note)
        if found:
            spread = (int(found.group(1)), int(found.group(2)))
        out[(row.kind, row.key)] = Target(row.events if row.events is not None else row.persons,
                                          row.amount_fen, row.positions, spread)
    for key, count in FREE_H1.items():
        out.setdefault(key, Target(count))
    return out


class _World:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.exact = cfg.calibrate == "2024H1"
        self.scale = cfg.persons / BASE_PERSONS
        self.report = _targets_from_report(load_report(cfg.report_path))
        self.persons: list[Person] = []
        self.buckets: dict[int, list[tuple[Any, ...]]] = {}
        self.n = 0
        last_month = 6 + cfg.tail_months
        self.horizon = _month_bounds(2024 + (last_month - 1) // 12, (last_month - 1) % 12 + 1)[1]
        self.open_needs: dict[str, list[tuple[str, int, int]]] = {k: [] for k in NEED_PREDS}
        self.last_visit: dict[int, int] = {}  # person index -> day of the last home visit planned
        self.need_seq = 0
        self._snapshots: dict[tuple[int, int], list[tuple[Person, int, int, str, int, bool, float]]] = {}
        self.id_prefix = f"{cfg.seed}:{cfg.persons}:{cfg.calibrate}:".encode()
        self.idn_rng = random.Random(f"{cfg.seed}:idn")
        self.idn_seq: dict[str, int] = {}
        geo_rng = random.Random("fenghua-geography")
        self.towns = [t for t, _, _ in geo.TOWNS]
        self.town_cum: list[float] = []
        acc = 0.0
        for _, w, _ in geo.TOWNS:
            acc += w
            self.town_cum.append(acc)
        self.village_cum: dict[str, tuple[tuple[str, ...], list[float]]] = {}
        for town, _, villages in geo.TOWNS:
            cum, acc = [], 0.0
            for v in villages:
                acc += geo_rng.uniform(0.5, 1.6) * (1.4 if v.endswith("社区") else 1.0)
                cum.append(acc)
            self.village_cum[town] = (villages, cum)
        self.staff = {town: [geo_rng.choice(geo.SURNAMES) + geo_rng.choice(geo.GIVEN) for _ in range(4)]
                      for town in self.towns}
        names: list[tuple[str, str]] = []
        seen: set[str] = set()
        while len(names) < 60:
            name = f"宁波{geo_rng.choice(geo.EMPLOYER_PREFIX)}{geo_rng.choice(geo.EMPLOYER_TRADE)}有限公司"
            if name not in seen:
                seen.add(name)
                names.append((name, geo_rng.choices(self.towns, cum_weights=self.town_cum)[0]))
        self.employers = names

    # ---- records ----------------------------------------------------------------------------------
    def rec(self, day: int, secs: int, code: int, pidx: int, a: Any = None, b: Any = None, c: Any = None) -> int:
        n = self.n
        self.n = n + 1
        if day <= self.horizon:
            bucket = self.buckets.get(day)
            if bucket is None:
                bucket = self.buckets[day] = []
            bucket.append((day * DAY + secs, n, code, pidx, a, b, c))
        return n

    def new_need_id(self) -> str:
        self.need_seq += 1
        return f"N{self.cfg.seed}-{self.need_seq:07d}"

    # ---- planning ----------------------------------------------------------------------------------
    def plan(self) -> None:
        rng = self.rng
        n_new = self.report[("person", "")].events or 0
        if not self.exact:
            n_new = round(n_new * self.scale * rng.uniform(0.94, 1.06))
        for _ in range(self.cfg.persons):
            self.new_person(rng, HISTORY_START, H1_START - 1)
        for _ in range(n_new):
            self.new_person(rng, H1_START, H1_END)
        for p in self.persons:
            self.lifecycle(rng, p)
        self.visit_history(random.Random(f"{self.cfg.seed}:visits"))
        self.period(random.Random(f"{self.cfg.seed}:2023Q4"), Q4_START, H1_START - 1,
                    self.scaled(rng, 0.5), exact=False)
        h1 = self.report if self.exact else self.scaled(rng, 1.0)
        self.period(rng, H1_START, H1_END, h1, exact=self.exact, monthly_exact=self.exact)
        if self.cfg.tail_months:
            self.tail(random.Random(f"{self.cfg.seed}:tail"))

    def scaled(self, rng: random.Random, factor: float) -> dict[tuple[str, str], Target]:
        out = {}
        for key, t in self.report.items():
            jitter = self.scale * factor * rng.uniform(0.92, 1.08)
            out[key] = Target(
                None if t.events is None else round(t.events * jitter),
                None if t.amount_fen is None else round(t.amount_fen * jitter / 100) * 100,
                None if t.positions is None else max(1, round(t.positions * jitter)),
                None)
        return out

    def new_person(self, rng: random.Random, lo: int, hi: int) -> Person:
        p = Person()
        p.idx = len(self.persons)
        u = rng.random()
        if u < 0.05:
            age, group = rng.uniform(1.5, 17.5), 0
        elif u < 0.24:
            age, group = rng.uniform(18, 45), 1
        elif u < 0.60:
            age, group = rng.uniform(45, 65), 2
        else:
            age, group = min(98.0, 65 + rng.expovariate(1 / 10)), 3
        p.birth = hi - int(age * 365.25)
        p.group = group
        p.reg = _workday(rng, min(hi, max(lo, p.birth + 365)), hi)
        x = rng.random()
        cum = _CAT_CUM[group]
        cat = CATEGORIES[-1]
        for i, edge in enumerate(cum):
            if x < edge:
                cat = CATEGORIES[i]
                break
        p.category = cat
        p.grade = rng.choices((1, 2, 3, 4), weights=_GRADE_W[cat])[0]
        hp = (0.33 if p.grade <= 2 else 0.11) + (0.06 if cat in ("intellectual", "mental") else 0.0)
        p.hardship = rng.random() < hp
        p.tier = 46_000 if rng.random() < 0.45 else 33_000
        p.prio_l, p.prio_n = rng.random(), rng.random()
        male = rng.random() < 0.57
        town = rng.choices(self.towns, cum_weights=self.town_cum)[0]
        villages, vcum = self.village_cum[town]
        p.town, p.village = town, rng.choices(villages, cum_weights=vcum)[0]
        p.expires = _plus_years(p.reg, 10)
        p.name, p.phone = person_identity(self.cfg.seed, p.idx, male)  # hashed: no draw from rng
        digest = hashlib.blake2b(f"person:{self.cfg.seed}:{p.idx}".encode(), digest_size=16).hexdigest()
        p.pid = "p" + digest
        if self.cfg.id_number_fraction and self.idn_rng.random() < self.cfg.id_number_fraction:
            born = date.fromordinal(p.birth)
            region = "330283" if born.year < 2017 else "330213"
            stem = region + born.strftime("%Y%m%d")
            k = self.idn_seq.get(stem + str(male), 0)
            self.idn_seq[stem + str(male)] = k + 1
            seq = (k * 2 + (1 if male else 0) + 11 * (p.idx % 40)) % 1000
            first17 = f"{stem}{seq:03d}"
            p.idn = first17 + _id_check(first17)
        self.persons.append(p)
        return p

    @staticmethod
    def registration(p: Person) -> dict[str, Any]:
        """The ``person.registered`` payload (name and phone are sealed by the producer on the log)."""
        return {"category": p.category, "grade": p.grade, "birth_date": _ds(p.birth), "hardship": p.hardship,
                "certificate_expires": _ds(p.expires), "name": p.name, "phone": p.phone}

    def lifecycle(self, rng: random.Random, p: Person) -> None:
        """Registration, renewals, moves, hardship changes, death/cancellation up to the end of H1."""
        secs = _ri(rng, WORK_FROM, WORK_TO)
        self.rec(p.reg, secs, REG, p.idx, self.registration(p))
        # end of registration (death or cancellation), drawn now, recorded after the certificates
        end: int | None = None
        if p.reg < H1_START - 90 and rng.random() < (0.01, 0.02, 0.05, 0.12)[p.group]:
            end = _ri(rng, p.reg + 60, H1_START - 1)
        elif rng.random() < (0.002, 0.002, 0.006, 0.022)[p.group]:
            lo = max(H1_START, p.reg + 30)
            if lo <= H1_END:
                end = _ri(rng, lo, H1_END)
        last = H1_END if end is None else min(H1_END, end - 1)
        changes: list[tuple[int, int, dict[str, Any], tuple[str, str] | None]] = []
        expires, grade = p.expires, p.grade
        while expires <= H1_END + 60:
            if rng.random() >= RENEWED:  # lapsed: the registration is cancelled a few months later
                lapse = expires + _ri(rng, 60, 150)
                if lapse <= min(H1_END, last):
                    self.cancel(rng, p, lapse)
                    end, last = None, lapse - 1
                break
            # renewed when the expiry warning shows (the 60 days before), a few weeks late at times
            day = expires - _ri(rng, 0, 60) if rng.random() < 0.85 else expires + _ri(rng, 1, 45)
            if day <= p.reg or day > last:  # not (yet) renewed at the end of H1, or the person ended first
                break
            expires = _plus_years(expires, 10)
            change: dict[str, Any] = {"certificate_expires": _ds(expires)}
            if rng.random() < 0.12:
                grade = min(4, max(1, grade + rng.choice((-1, 1))))
                change["grade"] = grade
            if rng.random() < 0.01 and p.category != "multiple":
                change["category"] = "multiple"
            changes.append((day, _ri(rng, WORK_FROM, WORK_TO), change, None))
        if end is not None:
            self.end_person(rng, p, end)
        if rng.random() < 0.06 and p.reg + 100 <= last:
            day = _ri(rng, p.reg + 100, last)
            changes.append((day, _ri(rng, WORK_FROM, WORK_TO), {"hardship": None}, None))
        if rng.random() < 0.05 and p.reg + 200 <= last:
            day = _ri(rng, p.reg + 200, last)
            town = p.town if rng.random() < 0.6 else rng.choices(self.towns, cum_weights=self.town_cum)[0]
            villages, vcum = self.village_cum[town]
            village = rng.choices(villages, cum_weights=vcum)[0]
            if (town, village) != (p.town, p.village):
                p.moves = [(day, town, village)]
                changes.append((day, _ri(rng, WORK_FROM, WORK_TO), {"hardship": None}, (town, village)))
        if changes:
            changes.sort(key=lambda ch: ch[0])
            p.changes = changes
            p.mutable = any(len(ch) > 1 or "certificate_expires" not in ch for _, _, ch, _ in changes)
            hardship = p.hardship
            for i, (day, secs, change, place) in enumerate(changes):
                if "hardship" in change:  # flips (no place) or re-confirmation on a move
                    if place is None:
                        hardship = not hardship
                    change["hardship"] = hardship
                changes[i] = (day, secs, change, place)
                self.rec(day, secs, PROFILE, p.idx, change, place)

    def cancel(self, rng: random.Random, p: Person, day: int) -> None:
        """注销: the certificate lapsed and was not renewed."""
        p.end, p.end_status = day, "cancelled"
        p.report = day + _ri(rng, 0, 3)
        self.rec(p.report, _ri(rng, WORK_FROM, WORK_TO), STATUS, p.idx, p.end_status, _ds(day))

    def end_person(self, rng: random.Random, p: Person, day: int) -> None:
        elderly = p.group == 3
        p.end = day
        p.end_status = "deceased" if rng.random() < (0.93 if elderly else 0.7) else "cancelled"
        lag = _ri(rng, 0, 3) if p.end_status == "cancelled" else min(45, int(rng.expovariate(1 / 9)))
        p.report = day + lag
        self.rec(p.report, _ri(rng, WORK_FROM, WORK_TO), STATUS, p.idx, p.end_status, _ds(day))

    # ---- one period of activity ----------------------------------------------------------------------
    def snapshot(self, lo: int, hi: int) -> list[tuple[Person, int, int, str, int, bool, float]]:
        """Persons active at some day of [lo, hi]: (person, first day, last day, category, grade,
        hardship, age) with the state on the first day.  Cached per period."""
        key = (lo, hi)
        snap = self._snapshots.get(key)
        if snap is None:
            snap = []
            for p in self.persons:
                a = p.reg + 1
                if a < lo:
                    a = lo
                b = hi if p.end is None or p.end > hi else p.end - 1
                if a > b:
                    continue
                if not p.mutable:
                    c, g, h = p.category, p.grade, p.hardship
                else:
                    c, g, h = p.state(a)
                snap.append((p, a, b, c, g, h, (a - p.birth) / 365.25))
            self._snapshots[key] = snap
        return snap

    def candidates(self, lo: int, hi: int, pred: Pred, exclude: set[int] | None = None) -> list[Cand]:
        if pred is _any and not exclude:
            return [(p, 1.0, a, b) for p, a, b, _, _, _, _ in self.snapshot(lo, hi)]
        out: list[Cand] = []
        for p, a, b, c, g, h, age in self.snapshot(lo, hi):
            w = pred(p, c, g, h, age)
            if w and not (exclude and p.idx in exclude):
                out.append((p, w, a, b))
        return out

    @staticmethod
    def pick(rng: random.Random, cands: list[Cand], n: int, exact: bool, what: str) -> list[Cand]:
        if n > len(cands):
            if exact:
                raise CalibrationError(f"{what}: {n} needed but only {len(cands)} eligible persons; "
                                       "simulate more persons")
            n = len(cands)
        if n <= 0:
            return []
        rnd = rng.random
        keyed = [(rnd() if c[1] == 1.0 else rnd() ** (1.0 / c[1]), j) for j, c in enumerate(cands)]
        return [cands[j] for _, j in heapq.nlargest(n, keyed)]

    def period(self, rng: random.Random, lo: int, hi: int, targets: dict[tuple[str, str], Target],
               exact: bool, monthly_exact: bool = False) -> None:
        self._snapshots.clear()
        months = _months(lo, hi)
        factor = len(months) / 6
        for program, dom in (("living_subsidy", 10), ("nursing_subsidy", 15)):
            self.monthly(rng, months, hi, program, dom, targets.get(("payment", program)), monthly_exact)
        is_h1 = (lo, hi) == (H1_START, H1_END)
        for program, pred in PAYMENT_PREDS.items():
            t = targets.get(("payment", program))
            if t is None or not t.events:
                continue
            w_lo, w_hi = lo, hi
            if is_h1:
                w_lo = date(2024, H1_WINDOWS[program][0], 1).toordinal()
                w_hi = _month_bounds(2024, H1_WINDOWS[program][1])[1]
            self.one_off(rng, w_lo, w_hi, hi, program, pred, t, exact)
        self.employment(rng, lo, hi, targets, exact)
        for service in SERVICE_SPECS:
            t = targets.get(("service", service))
            self.services(rng, lo, hi, service, t.events if t and t.events else 0, exact)
        for need, count in UNMET_H1.items():
            if need == "accessibility_modification" and not is_h1:
                continue
            n = round(count * self.scale * factor * (1.0 if is_h1 else rng.uniform(0.7, 1.3)))
            self.unmet_needs(rng, lo, hi, need, n)
        t = targets.get(("posting", ""))
        if t and t.positions:
            self.postings(rng, lo, hi, t.positions)
        t = targets.get(("visit", "home_visit"))
        if t and t.events:
            self.home_visits(rng, lo, hi, t.events, exact)
        t = targets.get(("visit", "rehab_in_village"))
        if t and t.events:
            self.rehab_in_village(rng, lo, hi, t, exact, is_h1)
        for kind, who in (("family_doctor", "社区卫生服务中心"), ("assessment", "区残联评定小组")):
            t = targets.get(("visit", kind))
            if t and t.events:
                chosen = self.pick(rng, self.candidates(lo, hi, _any), t.events, exact, f"visit {kind}")
                for p, _, a, b in chosen:
                    day = _workday(rng, a, b)
                    town = p.place(day)[0]
                    visitor = f"{town}{who} {self.staff[town][rng.randrange(4)]}" if kind == "family_doctor" \
                        else f"{who} {rng.choice(geo.SURNAMES)}{rng.choice(geo.GIVEN)}"
                    self.rec(day, _ri(rng, WORK_FROM, WORK_TO), VISIT, p.idx, kind, visitor, ())

    def monthly(self, rng: random.Random, months: list[tuple[int, int]], hi: int, program: str, dom: int,
                target: Target | None, exact: bool) -> None:
        living = program == "living_subsidy"
        plan = []
        # only persons who are (or at some point become) eligible
        pool = [p for p in self.persons if p.mutable or (p.hardship if living else p.grade <= 2)]
        for y, m in months:
            ms, me = _month_bounds(y, m)
            payday = _payday(y, m, dom)
            elig = []
            for p in pool:
                if p.reg >= ms or (p.report is not None and p.report <= payday):
                    continue
                if not p.mutable:
                    g, h = p.grade, p.hardship
                else:
                    _, g, h = p.state(ms - 1)
                if h if living else g <= 2:
                    elig.append((p, g))
            elig.sort(key=(lambda e: -e[0].prio_l) if living else (lambda e: -e[0].prio_n))
            plan.append((y, m, me, payday, elig))
        if exact:
            if target is None or target.events is None or target.amount_fen is None:
                raise CalibrationError(f"{program}: the report has no events/amount")
            counts = _largest_remainder(target.events, [len(e[4]) for e in plan])
        else:
            counts = [round(len(e[4]) * rng.uniform(0.88, 0.92)) for e in plan]
        pays: list[list[Any]] = []  # [pidx, day, secs, period, amount]
        for (y, m, me, payday, elig), count in zip(plan, counts, strict=True):
            if count > len(elig):
                raise CalibrationError(f"{program} {y}-{m:02d}: {count} payments needed but only "
                                       f"{len(elig)} eligible persons; simulate more persons")
            open_dups = 1 if (m >= 4 and count > 1000 and rng.random() < 0.5) else 0
            chosen = elig[: count - open_dups]
            period = f"{y}-{m:02d}"
            for p, g in chosen:
                base = p.tier if living else (28_500 if g == 1 else 21_500)
                pays.append([p.idx, payday, _ri(rng, 9 * 3600, 17 * 3600), period, base])
            for _ in range(open_dups):  # a duplicate nobody has reversed (yet)
                p, g = chosen[rng.randrange(len(chosen))]
                base = p.tier if living else (28_500 if g == 1 else 21_500)
                pays.append([p.idx, min(me, payday + _ri(rng, 1, 3)), _ri(rng, WORK_FROM, WORK_TO),
                             period, base])
        self.amounts(rng, program, pays, target.amount_fen if exact and target else None)
        self.emit_payments(rng, program, pays, hi, 0.0015)

    def amounts(self, rng: random.Random, program: str, pays: list[list[Any]], total: int | None) -> None:
        """Set pays[i][4] to the final fen amounts: a few deliberately out of range, the rest within
        the contract range and (when ``total`` is given) summing exactly to it."""
        lo, hi = RANGES[program]
        fixed: set[int] = set()
        if len(pays) >= 500:
            for _ in range(max(1, round(len(pays) / 20_000))):
                i = rng.randrange(len(pays))
                fixed.add(i)
                pays[i][4] = {
                    "living_subsidy": 138_000, "nursing_subsidy": 6_000, "medical_insurance_subsidy": 260_000,
                    "pension_insurance_subsidy": 3_000, "self_employed_pension_subsidy": 620_000,
                    "accident_insurance": 50_000, "rehab_subsidy": 2_600_000, "education_aid": 2_450_000,
                }[program]
        if total is None:
            return
        rest = [i for i in range(len(pays)) if i not in fixed]
        amounts = allocate(total - sum(pays[i][4] for i in fixed), [pays[i][4] for i in rest], lo, hi, rng)
        for i, amount in zip(rest, amounts, strict=True):
            pays[i][4] = amount

    def emit_payments(self, rng: random.Random, program: str, pays: list[list[Any]], hi: int, dup_rate: float) -> None:
        for pidx, day, secs, period, amount in pays:
            self.rec(day, secs, PAY, pidx, program, amount, period)
            if rng.random() < dup_rate:  # a duplicate disbursement, reversed a few days later
                dup_day = day + _ri(rng, 1, 3)
                rev_day = dup_day + _ri(rng, 2, 20)
                if rev_day <= hi:
                    dup = self.rec(dup_day, _ri(rng, WORK_FROM, WORK_TO), PAY, pidx, program, amount, period)
                    self.rec(rev_day, _ri(rng, WORK_FROM, WORK_TO), REV, pidx, dup, rng.choice(REVERSAL_REASONS))

    def one_off(self, rng: random.Random, lo: int, hi: int, period_hi: int, program: str, pred: Pred,
                target: Target, exact: bool) -> None:
        n = target.events or 0
        chosen = self.pick(rng, self.candidates(lo, hi, pred), n, exact, program)
        pays: list[list[Any]] = []
        for p, _, a, b in chosen:
            day = _workday(rng, a, b)
            c, g, h = p.state(day)
            age = (day - p.birth) / 365.25
            if program == "medical_insurance_subsidy":
                base = 52_000 if (h or g <= 2) else 38_000
            elif program == "pension_insurance_subsidy":
                base = rng.choice((10_000, 20_000, 30_000, 40_000, 50_000, 60_000))
            elif program == "self_employed_pension_subsidy":
                base = _ri(rng, 60, 180) * 1000
            elif program == "accident_insurance":
                base = 5_000
            elif program == "rehab_subsidy":
                base = rng.choices((12_000, 20_000, 30_000, 48_000, 60_000, 80_000, 120_000, 360_000),
                                   weights=(15, 18, 18, 15, 12, 10, 8, 4))[0]
            else:  # education_aid
                base = (60_000 if age < 12 else 80_000 if age < 15 else 120_000 if age < 18 else 300_000
                        if age < 25 else 100_000)
            m = date.fromordinal(day)
            pays.append([p.idx, day, _ri(rng, WORK_FROM, WORK_TO), f"{m.year}-{m.month:02d}", base])
        pays.sort(key=lambda x: x[1])
        if program != "accident_insurance":
            self.amounts(rng, program, pays, target.amount_fen if exact else None)
        elif exact:
            self.amounts_plain(program, pays, target.amount_fen, rng)
        self.emit_payments(rng, program, pays, period_hi, 0.002)

    def amounts_plain(self, program: str, pays: list[list[Any]], total: int | None, rng: random.Random) -> None:
        if total is None:
            return
        lo, hi = RANGES[program]
        for row, amount in zip(pays, allocate(total, [r[4] for r in pays], lo, hi, rng), strict=True):
            row[4] = amount

    def employment(self, rng: random.Random, lo: int, hi: int, targets: dict[tuple[str, str], Target],
                   exact: bool) -> None:
        t_need, t_job = targets.get(("need", "employment")), targets.get(("job", ""))
        n_need = t_need.events if t_need and t_need.events else 0
        n_job = t_job.events if t_job and t_job.events else 0
        pred = NEED_PREDS["employment"]
        open_list = self.open_needs["employment"]
        waiting = {pidx for _, pidx, _ in open_list}
        for p, _, a, b in self.pick(rng, self.candidates(lo, hi, pred, waiting), n_need, exact, "employment needs"):
            day = _workday(rng, a, b)
            need_id = self.new_need_id()
            self.rec(day, _ri(rng, WORK_FROM, WORK_TO), NEED, p.idx, need_id, "employment")
            open_list.append((need_id, p.idx, day))
            waiting.add(p.idx)
        placed: set[int] = set()
        quota = round(n_job * 0.35)
        for item in list(open_list):
            if len(placed) >= quota:
                break
            need_id, pidx, need_day = item
            p = self.persons[pidx]
            a, b = max(lo, need_day + 7), min(p.last_day(hi), need_day + 120)
            if a <= b and pidx not in placed and rng.random() < 0.5:
                self.placement(rng, p, _workday(rng, a, b), need_id)
                placed.add(pidx)
                open_list.remove(item)
        rest = n_job - len(placed)
        for p, _, a, b in self.pick(rng, self.candidates(lo, hi, pred, placed | waiting), rest, exact, "job placements"):
            self.placement(rng, p, _workday(rng, a, b), None)

    def placement(self, rng: random.Random, p: Person, day: int, need_id: str | None) -> None:
        kind = rng.choices(PLACEMENT_KINDS, weights=_PLACEMENT_W)[0]
        town = p.place(day)[0]
        employer = {
            "proportional": lambda: rng.choice(self.employers)[0],
            "centralized": lambda: f"奉化区{rng.choice(geo.EMPLOYER_PREFIX)}福利企业",
            "self_employed": lambda: "个体经营(自主创业)",
            "sheltered": lambda: f"{town}残疾人之家",
            "public_welfare": lambda: f"{town}公益性岗位",
            "flexible": lambda: "灵活就业(电商/零工)",
        }[kind]()
        self.rec(day, _ri(rng, WORK_FROM, WORK_TO), PLACED, p.idx, employer, kind, need_id)

    def services(self, rng: random.Random, lo: int, hi: int, service: str, n: int, exact: bool) -> None:
        if n <= 0:
            return
        pred, need_kind, link_share, fulfil_share = SERVICE_SPECS[service]
        done: set[int] = set()
        secs = lambda: _ri(rng, WORK_FROM, WORK_TO)  # noqa: E731
        if need_kind:
            quota = round(n * fulfil_share)
            open_list = self.open_needs[need_kind]
            for item in list(open_list):
                if len(done) >= quota:
                    break
                need_id, pidx, need_day = item
                p = self.persons[pidx]
                a, b = max(lo, need_day + 3), min(p.last_day(hi), need_day + 75)
                if a > b or pidx in done or rng.random() >= 0.6:
                    continue
                c, g, h = p.state(a)
                if not pred(p, c, g, h, (a - p.birth) / 365.25):
                    continue
                self.rec(_workday(rng, a, b), secs(), SERVICE, pidx, service, need_id)
                done.add(pidx)
                open_list.remove(item)
        for p, _, a, b in self.pick(rng, self.candidates(lo, hi, pred, done), n - len(done), exact, service):
            day = _workday(rng, a, b)
            need_id = None
            if need_kind and link_share and rng.random() < link_share:
                need_day = max(lo, a, day - _ri(rng, 3, 25))
                if need_day < day:
                    need_id = self.new_need_id()
                    self.rec(need_day, secs(), NEED, p.idx, need_id, need_kind)
            self.rec(day, secs(), SERVICE, p.idx, service, need_id)

    def unmet_needs(self, rng: random.Random, lo: int, hi: int, need: str, n: int) -> None:
        waiting = {pidx for _, pidx, _ in self.open_needs[need]}
        for p, _, a, b in self.pick(rng, self.candidates(lo, hi, NEED_PREDS[need], waiting), n, False, need):
            day = _workday(rng, a, b)
            need_id = self.new_need_id()
            self.rec(day, _ri(rng, WORK_FROM, WORK_TO), NEED, p.idx, need_id, need)
            self.open_needs[need].append((need_id, p.idx, day))

    def postings(self, rng: random.Random, lo: int, hi: int, positions: int) -> None:
        count = max(1, min(positions, round(positions / 3.5)))
        sizes = allocate(positions, [_ri(rng, 1, 8) for _ in range(count)], 1, 30, rng, unit=1)
        for size in sizes:
            employer, town = rng.choice(self.employers)
            self.rec(_workday(rng, lo, hi), _ri(rng, WORK_FROM, WORK_TO), POSTED, -1, employer, size, town)

    def hazards(self, rng: random.Random, p: Person, day: int) -> tuple[str, ...]:
        if rng.random() >= 0.035:
            return ()
        c = p.state(day)[0]
        age = (day - p.birth) / 365.25
        weights = [4.0 if age >= 75 else 2.0, 3.0, 4.0 if c == "mental" else 0.5, 0.6, 1.2]
        first = rng.choices(HAZARDS, weights=weights)[0]
        if rng.random() < 0.15:
            second = rng.choices(HAZARDS, weights=weights)[0]
            if second != first:
                return (first, second)
        return (first,)

    def home_visits(self, rng: random.Random, lo: int, hi: int, n: int, exact: bool,
                    findings: bool = True) -> None:
        """``n`` home visits in [lo, hi], worked off like a caseworker's list: the watched households
        (困难 or grade 1-2: the ``visit_overdue`` rule's) longest without a visit first, give or take a
        few weeks, and a few others.  ``findings=False``: no hazards (before the alert system)."""
        watched: list[tuple[float, int, Cand]] = []
        others: list[Cand] = []
        for p, a, b, _, g, h, _ in self.snapshot(lo, hi):
            if p.mutable and not (h or g <= 2):  # watched from some day of the period on?
                _, g, h = p.state(b)
            if h or g <= 2:
                waited = a - self.last_visit.get(p.idx, p.reg)
                watched.append((waited + rng.random() * VISIT_JITTER, p.idx, (p, 1.0, a, b)))
            else:
                others.append((p, 1.0, a, b))
        n_other = min(len(others), round(n * OTHER_VISITS))
        if n - n_other > len(watched):
            n_other = min(len(others), n - len(watched))
        chosen = [c for _, _, c in heapq.nlargest(n - n_other, watched)]
        chosen += self.pick(rng, others, n_other, exact, "home visits")
        if exact and len(chosen) < n:
            raise CalibrationError(f"home visits: {n} needed but only {len(chosen)} persons; simulate more persons")
        for p, _, a, b in chosen:
            day = _workday(rng, a, b)
            town = p.place(day)[0]
            visitor = f"{town}残联 {self.staff[town][rng.randrange(4)]}"
            self.rec(day, _ri(rng, WORK_FROM, WORK_TO), VISIT, p.idx, "home_visit", visitor,
                     self.hazards(rng, p, day) if findings else ())
            if day > self.last_visit.get(p.idx, 0):
                self.last_visit[p.idx] = day

    def visit_history(self, rng: random.Random) -> None:
        """Home visits since the visit app went live (2022), quarter by quarter at the calibrated
        half-year's rate, so that the last visit of every watched household is recent."""
        per_half = self.report[("visit", "home_visit")].events or 0
        for year, month in _months(VISITS_FROM, Q4_START - 1)[::3]:  # quarters (VISITS_FROM starts one)
            lo, hi = date(year, month, 1).toordinal(), _month_bounds(year, month + 2)[1]
            self.home_visits(rng, lo, hi, round(per_half / 2 * self.scale * rng.uniform(0.9, 1.1)), False,
                             findings=False)
        self._snapshots.clear()

    def rehab_in_village(self, rng: random.Random, lo: int, hi: int, target: Target, exact: bool,
                         is_h1: bool) -> None:
        n = target.events or 0
        n_towns, n_villages = target.villages or (8, 10)
        if not exact:
            n_villages = max(1, min(10, round(n / 30)))
            n_towns = max(1, min(n_villages, 8))
        w_lo, w_hi = (date(2024, 3, 1).toordinal(), date(2024, 6, 28).toordinal()) if is_h1 else (lo, hi)
        residents: dict[tuple[str, str], list[Cand]] = {}
        for cand in self.candidates(w_lo, w_hi, _any):
            residents.setdefault(cand[0].place(cand[2]), []).append(cand)
        by_town: dict[str, list[tuple[int, tuple[str, str]]]] = {}
        for place, people in residents.items():
            by_town.setdefault(place[0], []).append((len(people), place))
        towns = sorted(by_town, key=lambda t: (-sum(k for k, _ in by_town[t]), t))
        towns = rng.sample(towns[: max(n_towns, 10)], min(n_towns, len(towns)))
        firsts, others = [], []
        for town in towns:
            ranked = sorted(by_town[town], reverse=True)
            firsts.append(ranked[0][1])
            others += [place for _, place in ranked[1:3]]
        others.sort(key=lambda place: (-len(residents[place]), place))
        villages = firsts + others[: max(0, n_villages - len(firsts))]
        shares = _largest_remainder(n, [len(residents[v]) for v in villages])
        for place, share in zip(villages, shares, strict=True):
            days = sorted({_workday(rng, w_lo, w_hi) for _ in range(2)})
            eligible = []
            for p, _, a, b in residents[place]:
                ok = [d for d in days if a <= d <= b and p.place(d) == place]
                if ok:
                    eligible.append((p, ok))
            if share > len(eligible):
                if exact:
                    raise CalibrationError(f"rehab_in_village {place}: {share} needed, {len(eligible)} eligible")
                share = len(eligible)
            visitor = f"区康复指导中心 {rng.choice(geo.SURNAMES)}{rng.choice(geo.GIVEN)}"
            for p, ok in rng.sample(eligible, share):
                day = rng.choice(ok)
                self.rec(day, _ri(rng, WORK_FROM, WORK_TO), VISIT, p.idx, "rehab_in_village", visitor, ())

    # ---- after June 2024 ---------------------------------------------------------------------------------
    def tail(self, rng: random.Random) -> None:
        for y, m in _months(H1_END + 1, self.horizon):
            lo, hi = _month_bounds(y, m)
            for p in self.persons:
                if p.end is None and p.reg < lo and rng.random() < (0.0003, 0.0003, 0.001, 0.0037)[p.group]:
                    self.end_person(rng, p, _ri(rng, lo, hi))
            base_new = (self.report[("person", "")].events or 0) / 6
            for _ in range(round(base_new * self.scale * rng.uniform(0.8, 1.2))):
                p = self.new_person(rng, lo, hi)
                self.rec(p.reg, _ri(rng, WORK_FROM, WORK_TO), REG, p.idx, self.registration(p))
            targets = self.scaled(rng, 1 / 6)
            targets[("service", "accessibility_modification")] = Target(round(12 * self.scale))
            self.period(rng, lo, hi, targets, exact=False)

    # ---- output -----------------------------------------------------------------------------------------
    def events(self) -> Iterator[dict[str, Any]]:
        persons = self.persons
        blake = hashlib.blake2b
        prefix = self.id_prefix
        times = _TIMES
        resend_rng = random.Random(f"{self.cfg.seed}:resend")
        resend = self.cfg.resend_fraction

        def event_id(n: int) -> str:
            h = blake(prefix + str(n).encode(), digest_size=16).hexdigest()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

        for day in sorted(self.buckets):
            records = self.buckets.pop(day)
            records.sort()
            head = _ds(day) + "T"
            base = day * DAY
            for t, n, code, pidx, a, b, c in records:
                if code == POSTED:
                    ev = {"event_id": event_id(n), "type": "job.posted", "version": 1,
                          "occurred_at": head + times[t - base], "person_id": None, "town": c, "village": None,
                          "source": "simulate/employment", "payload": {"employer": a, "positions": b}}
                else:
                    p = persons[pidx]
                    if code == PAY:
                        payload: dict[str, Any] = {"program": a, "amount_fen": b, "period": c}
                    elif code == VISIT:
                        payload = {"visit_kind": a, "visitor": b, "hazards": list(c)}
                    elif code == SERVICE:
                        payload = {"service": a} if b is None else {"service": a, "need_id": b}
                    elif code == REG or code == PROFILE:
                        payload = dict(a)
                    elif code == STATUS:
                        payload = {"status": a, "effective_date": b}
                    elif code == REV:
                        payload = {"reverses": event_id(a), "reason": b}
                    elif code == NEED:
                        payload = {"need_id": a, "need": b}
                    else:  # PLACED
                        payload = {"employer": a, "placement_kind": b}
                        if c is not None:
                            payload["need_id"] = c
                    town, village = b if code == PROFILE and b is not None else p.place(day)
                    ev = {"event_id": event_id(n), "type": _TYPES[code], "version": 1,
                          "occurred_at": head + times[t - base], "person_id": p.pid, "town": town,
                          "village": village, "source": _SOURCES[code], "payload": payload}
                    if p.idn is not None:
                        del ev["person_id"]
                        ev["id_number"] = p.idn
                if resend and resend_rng.random() < resend:
                    again = copy.deepcopy(ev)
                    yield ev
                    yield again
                else:
                    yield ev
