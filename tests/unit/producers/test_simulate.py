"""The district simulator: reproducible, ordered, valid, and calibrated to the federation's H1 report."""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from producers.simulate import CalibrationError, SimConfig, generate
from producers.simulate.cli import TokenBucket, parse_rate, register
from producers.simulate.generator import RANGES, allocate
from producers.simulate.report import PACKAGED_REPORT

SHARED_REPORT = Path(__file__).resolve().parents[3].parent / "shared" / "domain" / "h1-report.csv"
REPORT = SHARED_REPORT if SHARED_REPORT.exists() else PACKAGED_REPORT
SMALL = SimConfig(seed=7, persons=1500)


@pytest.fixture(scope="module")
def calibrated() -> list[dict]:
    return list(generate(SimConfig(seed=42, calibrate="2024H1")))


def _lines(events) -> list[str]:
    return [json.dumps(e, ensure_ascii=False, sort_keys=True) for e in events]


# ---- an independent reference counter (the /api/counts rules, written from the contract) ----------
KEY_FIELD = {"payment": "program", "service": "service", "visit": "visit_kind", "job": "placement_kind",
             "need": "need", "person": "category", "posting": None}
TYPE_KIND = {"payment.disbursed": "payment", "service.delivered": "service", "visit.completed": "visit",
             "job.placed": "job", "need.registered": "need", "person.registered": "person",
             "job.posted": "posting"}


def _shanghai_date(ts: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(ts).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


def reference_counts(events: list[dict], date_from: str, date_to: str) -> dict:
    unique = {}
    for e in events:
        unique.setdefault(e["event_id"], e)
    reversed_ids = {e["payload"]["reverses"] for e in unique.values() if e["type"] == "payment.reversed"}
    out: dict = defaultdict(lambda: {"events": 0, "persons": set(), "amount_fen": 0, "positions": 0})
    for event_id, e in unique.items():
        kind = TYPE_KIND.get(e["type"])
        if kind is None or event_id in reversed_ids:
            continue
        if not date_from <= _shanghai_date(e["occurred_at"]) <= date_to:
            continue
        field = KEY_FIELD[kind]
        for key in {"", e["payload"][field] if field else ""}:
            row = out[(kind, key)]
            row["events"] += 1
            if e.get("person_id"):
                row["persons"].add(e["person_id"])
            row["amount_fen"] += e["payload"].get("amount_fen", 0)
            row["positions"] += e["payload"].get("positions", 0)
    return out


def report_rows() -> list[dict]:
    with REPORT.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---- tests ----------------------------------------------------------------------------------------
def test_same_seed_same_stream_different_seed_different():
    first, second = _lines(generate(SMALL)), _lines(generate(SMALL))
    assert first == second
    other = _lines(generate(SimConfig(seed=8, persons=1500)))
    assert other != first
    assert len(set(first) & set(other)) == 0  # not even a shared event (ids differ)


def test_ordered_by_occurred_at_and_unique_ids(calibrated):
    stamps = [e["occurred_at"] for e in calibrated]
    assert all(ts.endswith("+08:00") for ts in stamps)
    assert stamps == sorted(stamps)
    assert len({e["event_id"] for e in calibrated}) == len(calibrated)
    assert stamps[0] < "2009" and stamps[-1] <= "2024-06-30T23:59:59+08:00"


def test_calibrated_h1_reproduces_every_report_row(calibrated):
    counts = reference_counts(calibrated, "2024-01-01", "2024-06-30")
    rows = report_rows()
    assert len(rows) >= 19
    for row in rows:
        got = counts[(row["kind"], row["key"])]
        if row["events"]:
            assert got["events"] == int(row["events"]), row["metric"]
        if row["persons"]:
            assert len(got["persons"]) == int(row["persons"]), row["metric"]
        if row["amount_yuan"]:
            assert got["amount_fen"] == int(Decimal(row["amount_yuan"]) * 100), row["metric"]
        if row["kind"] == "posting":
            assert got["positions"] == int(row["note"].split()[0]) == 122
    # the two published-as-person-times subsidies have plausible monthly recipient numbers
    for program, monthly in (("living_subsidy", 3500), ("nursing_subsidy", 6800)):
        persons = len(counts[("payment", program)]["persons"])
        assert monthly * 0.9 < persons < monthly * 1.2, (program, persons)


def test_rehab_in_village_spread_and_realistic_extras(calibrated):
    h1 = [e for e in calibrated if e["occurred_at"] >= "2024-01-01"]
    rehab = [e for e in h1 if e["type"] == "visit.completed" and e["payload"]["visit_kind"] == "rehab_in_village"]
    assert len({e["town"] for e in rehab}) == 8
    assert len({(e["town"], e["village"]) for e in rehab}) == 10
    by_id = {e["event_id"]: e for e in calibrated}
    reversals = [e for e in calibrated if e["type"] == "payment.reversed"]
    assert reversals
    for rev in reversals:
        target = by_id[rev["payload"]["reverses"]]
        assert target["type"] == "payment.disbursed" and target["person_id"] == rev["person_id"]
        assert target["occurred_at"] < rev["occurred_at"]
    out_of_range = [e for e in h1 if e["type"] == "payment.disbursed"
                    and not RANGES[e["payload"]["program"]][0] <= e["payload"]["amount_fen"]
                    <= RANGES[e["payload"]["program"]][1]]
    assert 3 <= len(out_of_range) <= 30
    ended = {e["person_id"]: e["payload"]["effective_date"] for e in calibrated
             if e["type"] == "person.status_changed"}
    after_end = [e for e in calibrated if e["type"] == "payment.disbursed" and e["person_id"] in ended
                 and e["payload"]["period"] + "-01" > ended[e["person_id"]]]
    assert after_end  # payment_after_end cases exist
    assert any(e["payload"]["hazards"] for e in h1 if e["type"] == "visit.completed")
    needs = {e["payload"]["need_id"] for e in calibrated if e["type"] == "need.registered"}
    met = {e["payload"]["need_id"] for e in calibrated
           if e["type"] in ("service.delivered", "job.placed") and "need_id" in e["payload"]}
    assert met <= needs and met and needs - met


def test_every_person_event_follows_registration(calibrated):
    registered: set[str] = set()
    for e in calibrated:
        if e["type"] == "person.registered":
            assert e["person_id"] not in registered
            registered.add(e["person_id"])
        elif e["type"] != "job.posted":
            assert e["person_id"] in registered, e


def test_registered_persons_have_a_synthetic_name_and_mobile(calibrated):
    import re

    regs = [e for e in calibrated if e["type"] == "person.registered"]
    names = [e["payload"]["name"] for e in regs]
    phones = [e["payload"]["phone"] for e in regs]
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", n) for n in names), names[:5]
    assert all(re.fullmatch(r"1[358][0-9]{9}", p) for p in phones), phones[:5]
    assert len(set(names)) > 400 and len(set(phones)) > 0.99 * len(phones)  # varied, as in a real registry
    assert {n[0] for n in names} == set("王周陈李张孙蒋胡毛应邬竺俞汪林赵徐吴方沈袁楼裘董")
    # deterministic per seed, different for another seed
    again = [(e["payload"]["name"], e["payload"]["phone"]) for e in generate(SMALL) if e["type"] == "person.registered"]
    assert again == [(e["payload"]["name"], e["payload"]["phone"]) for e in generate(SMALL)
                     if e["type"] == "person.registered"]
    other = [(e["payload"]["name"], e["payload"]["phone"]) for e in generate(SimConfig(seed=8, persons=1500))
             if e["type"] == "person.registered"]
    assert sum(a != b for a, b in zip(again, other, strict=False)) > 0.9 * len(again)


def test_every_event_is_valid(calibrated):
    validation = pytest.importorskip("schemas.validation")
    for e in calibrated:
        result = validation.validate_event(e)
        assert isinstance(result, validation.Accepted), (e, getattr(result, "reasons", None))


def test_tail_does_not_change_h1_and_id_numbers_are_consistent():
    base = _lines(generate(SMALL))
    with_tail = list(generate(SimConfig(seed=7, persons=1500, tail_months=2)))
    assert _lines(e for e in with_tail if e["occurred_at"] < "2024-07") == base
    assert with_tail[-1]["occurred_at"].startswith("2024-08")

    from schemas.idnumber import is_valid_id_number

    events = list(generate(SimConfig(seed=7, persons=1500, id_number_fraction=0.2)))
    carried = [e for e in events if "id_number" in e]
    assert 0.1 * len(events) < len(carried) < 0.3 * len(events)
    assert all("person_id" not in e and is_valid_id_number(e["id_number"]) for e in carried)
    regs = [e["id_number"] for e in carried if e["type"] == "person.registered"]
    assert len(regs) == len(set(regs))
    # only the identity field differs from the plain run
    plain = list(generate(SMALL))
    strip = lambda e: {k: v for k, v in e.items() if k not in ("person_id", "id_number")}  # noqa: E731
    assert [strip(e) for e in events] == [strip(e) for e in plain]


def test_resend_repeats_identical_events():
    events = list(generate(SimConfig(seed=7, persons=1500, resend_fraction=0.01)))
    ids = [e["event_id"] for e in events]
    assert len(ids) > len(set(ids))
    firsts: dict[str, dict] = {}
    for e in events:
        assert firsts.setdefault(e["event_id"], e) == e


def test_too_small_population_cannot_calibrate():
    with pytest.raises(CalibrationError):
        generate(SimConfig(persons=2000, calibrate="2024H1"))
    with pytest.raises(ValueError):
        SimConfig(calibrate="2023H2")


def test_allocate_hits_total_within_range():
    rng = random.Random(1)
    bases = [rng.randint(100, 900) * 100 for _ in range(1000)]
    out = allocate(43_210_000, bases, 10_000, 100_000, rng)
    assert sum(out) == 43_210_000 and all(10_000 <= x <= 100_000 for x in out)
    assert sum(allocate(122, [3] * 35, 1, 30, rng, unit=1)) == 122
    with pytest.raises(CalibrationError):
        allocate(10, [1, 1], 10, 20, rng)


def test_rate_parsing_and_token_bucket():
    assert parse_rate("500/s") == 500 and parse_rate("500") == 500 and parse_rate("30/min") == 0.5
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate("fast")
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(100, burst=1, clock=lambda: now[0], sleep=sleep)
    for _ in range(101):
        bucket.take()
    assert now[0] == pytest.approx(1.0)


def test_cli_writes_json_lines(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "events.jsonl"
    args = parser.parse_args(["simulate", "--seed", "7", "--persons", "1500", "--out", str(out),
                              "--limit", "2500", "--no-progress"])
    assert args.func(args) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2500
    assert [json.loads(line) for line in lines] == list(generate(SMALL))[:2500]
    assert "2500 events" in capsys.readouterr().err


# ---- the demo's need warnings are a work list, not sixteen years of backlog -------------------------
# The simulated events folded through the processors' own pure domain (the same Projector and rules
# the SQL store uses), judged at the end of the calibrated half-year, as the dashboard does.
AS_OF = "2024-06-30"


@pytest.fixture(scope="module")
def folded(calibrated) -> dict:
    from processors.domain.reducer import Projector
    from processors.domain.rules_config import default_rules
    from schemas.validation import validate_event

    rules = default_rules()
    projector = Projector(rules)
    aggregates: dict = {}
    for raw in calibrated:
        event = validate_event(raw).event  # canonical (upcast) form, as the processors see it
        person_id = event.get("person_id")
        agg, _ = projector.apply(aggregates.get(person_id) if person_id else None, event)
        if person_id:
            aggregates[person_id] = agg
    return {"rules": rules, "aggregates": aggregates}


def _warnings(folded: dict, as_of: str) -> list:
    from datetime import date

    from processors.domain.warnings import evaluate_warnings

    day = date.fromisoformat(as_of)
    return [w for agg in folded["aggregates"].values() for w in evaluate_warnings(agg, day, folded["rules"])]


def test_home_visits_follow_a_cadence_so_no_overdue_visit_is_years_old(calibrated, folded):
    overdue = [w for w in _warnings(folded, AS_OF) if w.rule == "visit_overdue"]
    # every hardship / grade <= 2 household was visited within the last year and a half
    assert overdue and min(w.since for w in overdue) >= "2023-01-01", min(w.since for w in overdue)
    # the federation's home visits go to the households the rule watches (困难/重度), most overdue first
    watched = {agg.person_id for agg in folded["aggregates"].values()
               if agg.hardship or (agg.grade is not None and agg.grade <= 2)}
    h1_visits = [e for e in calibrated if e["type"] == "visit.completed" and e["occurred_at"] >= "2024"
                 and e["payload"]["visit_kind"] == "home_visit"]
    assert sum(e["person_id"] in watched for e in h1_visits) >= 0.9 * len(h1_visits)


def test_certificates_are_renewed_or_the_registration_cancelled(folded):
    expiring = [w for w in _warnings(folded, AS_OF) if w.rule == "certificate_expiring"]
    # due now: certificates expiring in the next 60 days, and the few lapsed in recent months
    assert len(expiring) < 600, len(expiring)
    assert min(w.since for w in expiring) >= "2023-07-01", min(w.since for w in expiring)


def test_needs_are_mostly_met_within_their_deadline(folded):
    from datetime import date

    deadlines = folded["rules"].need_deadline_days
    due, in_time = 0, 0
    for agg in folded["aggregates"].values():
        for need in agg.needs.values():
            if need.need is None or need.registered_on is None:
                continue
            deadline = date.fromisoformat(need.registered_on).toordinal() + deadlines[need.need]
            if deadline >= date.fromisoformat(AS_OF).toordinal():
                continue  # not due yet
            due += 1
            met = need.fulfilled_on is not None and date.fromisoformat(need.fulfilled_on).toordinal() <= deadline
            in_time += met
    assert due > 300 and in_time >= 0.8 * due, (in_time, due)
    unmet = [w for w in _warnings(folded, AS_OF) if w.rule == "need_unmet"]
    assert 0 < len(unmet) < 0.2 * due


def test_nursing_subsidy_reaches_nearly_every_grade_1_2_person(folded):
    missing = [w for w in _warnings(folded, AS_OF) if w.rule == "nursing_subsidy_missing"]
    severe = sum(1 for agg in folded["aggregates"].values()
                 if agg.status == "active" and agg.grade is not None and agg.grade <= 2)
    assert 0 < len(missing) < 0.07 * severe, (len(missing), severe)
