"""The differencing attack on small-cell suppression, mounted through the API (issue 15 item 6).

A district of six towns, three subsidy programs and six months, with small cells (1-4 persons)
scattered through it.  The attacker (anonymous, a viewer, or the caseworker of one town, who also
knows their own town exactly) asks for every aggregate the API offers -- ``/api/counts`` for
every town x program x period, ``/api/counts/grouped`` by every combination of town, key and
month, ``/api/report`` and ``/api/targets`` -- and then:

1. checks that every answer for the same cell agrees (a cell hidden in one answer and shown in
   another is recovered outright: "across group_by dimensions");
2. subtracts: every total minus its visible parts ("a town total minus the visible rows"),
   repeated until nothing new comes out;
3. solves the whole linear system the published cells and the tables' sums give (exact rational
   Gaussian elimination), for events and for amounts.

No suppressed cell may come out, exactly, by any of the three.  A time-differencing probe (two
ranges that differ by days) must be refused.  On the code before complementary suppression the
first subtraction already recovers cells.
"""

from __future__ import annotations

import calendar
import dataclasses
import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from careledger.settings import Settings
from processors.domain.model import Consumed
from processors.domain.rules_config import default_rules
from projections import open_store
from projections.api.app import create_app
from tests.support.reliability import record
from tests.unit.projections.api.conftest import StubProbe, auth, ev

TOWNS = ["锦屏街道", "岳林街道", "江口街道", "西坞街道", "溪口镇", "莼湖镇"]
KEYS = ["living_subsidy", "nursing_subsidy", "rehab_subsidy"]
MONTHS = [f"2024-{m:02d}" for m in range(1, 7)]
QUARTERS = {"2024Q1": MONTHS[:3], "2024Q2": MONTHS[3:]}
PERIODS = {"*": (None, None), "2024": ("2024-01-01", "2024-12-31"), "2024H1": ("2024-01-01", "2024-06-30"),
           "2024Q1": ("2024-01-01", "2024-03-31"), "2024Q2": ("2024-04-01", "2024-06-30"),
           **{m: (f"{m}-01", f"{m}-{calendar.monthrange(2024, int(m[-2:]))[1]}") for m in MONTHS}}
ALL = "*"


def payments() -> list[dict[str, Any]]:
    """Persons paid per town x program x month: mostly many, sometimes 1-4 (small), sometimes none."""
    rng = random.Random(15)
    events = []
    for town in TOWNS:
        for key in KEYS:
            pool = [f"{town}-{key}-{i}" for i in range(14)]
            for month in MONTHS:
                n = rng.choice([0, 1, 2, 3, 6, 8, 9, 12, 14])
                for person in pool[:n]:
                    events.append(ev(f"pay-{person}-{month}", "payment.disbursed", person, town, f"{month}-10",
                                     {"program": key, "amount_fen": 20_000 + 100 * rng.randrange(50),
                                      "period": month}))
    return events


@pytest.fixture
def district_api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = dataclasses.replace(Settings.from_env(), home=tmp_path / "home", kafka_bootstrap="127.0.0.1:1",
                                   sql_url=f"sqlite:///{tmp_path / 'district.sqlite3'}", small_cell_threshold=5,
                                   anonymous_aggregates="suppressed")
    store = open_store(settings.sql_url, default_rules(), topic=settings.topics.events)
    store.migrate()
    store.apply_batch([Consumed(0, n, e) for n, e in enumerate(payments())])
    with TestClient(create_app(settings, store=store, lag_probe=StubProbe())) as client:
        ts = client.app.state.tokens
        tokens = {"admin": ts.create("root", "admin"), "viewer": ts.create("v", "viewer"),
                  "caseworker": ts.create("cw", "caseworker", [TOWNS[0]])}
        yield client, tokens
    store.close()


Cell = tuple[str, str, str]


def collect(client: TestClient, token: str | None) -> tuple[dict[Cell, list[dict[str, Any]]], int]:
    """Every answer the API gives about each cell (town | *, key | *, period | *); refusals counted."""
    seen: dict[Cell, list[dict[str, Any]]] = {}
    refused = 0
    h = auth(token)

    def note(cell: Cell, answer: dict[str, Any]) -> None:
        seen.setdefault(cell, []).append({k: answer.get(k) for k in ("events", "amount_fen", "persons")})

    for period, (lo, hi) in PERIODS.items():
        dates = {k: v for k, v in (("from", lo), ("to", hi)) if v}
        for town in [None, *TOWNS]:
            for key in [None, *KEYS]:
                params = {"kind": "payment", **dates, **({"town": town} if town else {}), **({"key": key} if key else {})}
                answer = client.get("/api/counts", params=params, headers=h)
                if answer.status_code == 403:
                    refused += 1
                    continue
                note((town or ALL, key or ALL, period), answer.json())
        for cols in (["town"], ["key"], ["town", "key"]):
            answer = client.get("/api/counts/grouped", params=[("kind", "payment"), *dates.items(),
                                                                 *(("group_by", c) for c in cols)], headers=h)
            assert answer.status_code == 200, answer.text
            for row in answer.json()["rows"]:
                note((row.get("town", ALL), row.get("key", ALL), period), row)
    for cols in (["month"], ["town", "month"], ["key", "month"], ["town", "key", "month"]):
        answer = client.get("/api/counts/grouped", params=[("kind", "payment"), *(("group_by", c) for c in cols)],
                            headers=h)
        assert answer.status_code == 200, answer.text
        for row in answer.json()["rows"]:
            note((row.get("town", ALL), row.get("key", ALL), row["month"]), row)
    report = client.get("/api/report", params={"from": "2024-01-01", "to": "2024-06-30"}, headers=h).json()
    for row in report["rows"]:
        if row["kind"] == "payment":
            note((ALL, row["key"] or ALL, "2024H1"), row)
    return seen, refused


def equations() -> list[tuple[Cell, list[Cell]]]:
    """What the attacker knows about how cells add up: towns, programs, months of a quarter ..."""
    periods = list(PERIODS)
    eqs: list[tuple[Cell, list[Cell]]] = []
    for p in periods:
        for k in [ALL, *KEYS]:
            eqs.append(((ALL, k, p), [(t, k, p) for t in TOWNS]))
        for t in [ALL, *TOWNS]:
            eqs.append(((t, ALL, p), [(t, k, p) for k in KEYS]))
    for t in [ALL, *TOWNS]:
        for k in [ALL, *KEYS]:
            eqs.append(((t, k, "*"), [(t, k, "2024")]))
            eqs.append(((t, k, "2024"), [(t, k, "2024H1")]))  # H2 is empty: the attacker knows it is 0
            eqs.append(((t, k, "2024H1"), [(t, k, "2024Q1"), (t, k, "2024Q2")]))
            for q, months in QUARTERS.items():
                eqs.append(((t, k, q), [(t, k, m) for m in months]))
    return eqs


def attack(published: dict[Cell, int | None], measure: str) -> tuple[dict[Cell, int], dict[Cell, int]]:
    """(cells recovered by repeated subtraction, cells recovered by solving the linear system)."""
    known = {c: v for c, v in published.items() if v is not None}
    by_subtraction: dict[Cell, int] = {}
    progress = True
    while progress:
        progress = False
        for parent, children in equations():
            cells = [parent, *children]
            unknown = [c for c in cells if c not in known]
            if len(unknown) == 1:
                (u,) = unknown
                rest = sum(known[c] for c in children if c != u)
                value = known[parent] - rest if u != parent else rest
                known[u] = value
                by_subtraction[u] = value
                progress = True
    # the whole system, exactly: unknown cells as columns, one row per equation
    hidden = sorted(c for c, v in published.items() if v is None)
    col = {c: i for i, c in enumerate(hidden)}
    rows: list[list[Fraction]] = []
    for parent, children in equations():
        row = [Fraction(0)] * (len(hidden) + 1)
        for cell, coef in ((parent, 1), *((c, -1) for c in children)):
            if cell in col:
                row[col[cell]] += coef
            else:
                row[-1] -= coef * (published.get(cell) or 0)
        if any(row[:-1]):
            rows.append(row)
    solved = _solve(rows, len(hidden))
    return by_subtraction, {hidden[i]: int(v) for i, v in solved.items()}


def _solve(rows: list[list[Fraction]], n: int) -> dict[int, Fraction]:
    """Columns whose value the system fixes (reduced row echelon form over the rationals)."""
    pivots: list[int] = []
    r = 0
    for c in range(n):
        pivot = next((i for i in range(r, len(rows)) if rows[i][c] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        lead = rows[r][c]
        rows[r] = [x / lead for x in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c] != 0:
                f = rows[i][c]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r], strict=True)]
        pivots.append(c)
        r += 1
    fixed = {}
    for i, c in enumerate(pivots):
        if all(rows[i][j] == 0 for j in range(n) if j != c):
            fixed[c] = rows[i][-1]
    return fixed


def published_view(seen: dict[Cell, list[dict[str, Any]]], measure: str,
                   exact: dict[Cell, list[dict[str, Any]]] | None = None,
                   own_towns: tuple[str, ...] = ()) -> tuple[dict[Cell, int | None], list[Cell]]:
    """One value per cell (None: hidden) and the cells whose answers disagree (hidden here, shown there)."""
    out: dict[Cell, int | None] = {}
    inconsistent = []
    for cell, answers in seen.items():
        values = {a[measure] for a in answers}
        shown = [v for v in values if v is not None]
        if None in values and shown:
            inconsistent.append(cell)
        out[cell] = shown[0] if shown else None
    if exact is not None:  # a caseworker knows their own towns exactly, whatever the API says
        for cell, answers in exact.items():
            if cell[0] in own_towns:
                out[cell] = answers[0][measure]
    return out, inconsistent


@pytest.mark.parametrize("who", ["anonymous", "viewer", "caseworker"])
def test_no_suppressed_cell_can_be_recovered(district_api: tuple[TestClient, dict[str, str]], who: str) -> None:
    client, tokens = district_api
    truth, _ = collect(client, tokens["admin"])
    seen, refused = collect(client, tokens.get(who))
    own = ("锦屏街道",) if who == "caseworker" else ()
    hidden_total = 0
    recovered: dict[str, Any] = {}
    for measure in ("events", "amount_fen"):
        published, inconsistent = published_view(seen, measure, truth if own else None, own)
        hidden = [c for c, v in published.items() if v is None]
        hidden_total = max(hidden_total, len(hidden))
        by_subtraction, by_solving = attack(published, measure)
        exact = {c: truth[c][0][measure] for c in truth}
        recovered[measure] = {
            "inconsistent": inconsistent,
            "subtraction": sorted(c for c, v in by_subtraction.items() if c in hidden and v == exact.get(c, 0)),
            "solving": sorted(c for c, v in by_solving.items() if v == exact.get(c, 0)),
        }
    small = [c for c, a in truth.items() if 0 < (a[0]["persons"] or 0) < 5 and c[0] not in own]
    figures = {"cells": len(truth), "small_cells": len(small), "hidden_cells": hidden_total,
               "recovered": sum(len(v) for r in recovered.values() for v in r.values()), "refused_queries": refused}
    record("attack", f"small-cell suppression: differencing attack as {who}",
           claim="{cells} cells, {small_cells} small, {hidden_cells} hidden; totals minus visible rows, across "
                 "group_by dimensions and the full linear system recover {recovered}",
           **figures)
    shown_events, _ = published_view(seen, "events")
    assert small and [c for c in small if shown_events.get(c) is not None] == [], "a small cell is shown"
    assert recovered == {m: {"inconsistent": [], "subtraction": [], "solving": []} for m in recovered}, recovered


def test_ranges_that_differ_by_days_are_refused(district_api: tuple[TestClient, dict[str, str]]) -> None:
    """[1 Jan, 10 Mar] minus [1 Jan, 9 Mar] would be 10 March's payments: such totals need exact access."""
    client, tokens = district_api
    for token in (None, tokens["viewer"]):
        for params in ({"from": "2024-01-01", "to": "2024-03-10"}, {"from": "2024-01-01", "to": "2024-03-09"},
                       {"to": "2024-03-31"}):
            answer = client.get("/api/counts", params={"kind": "payment", **params}, headers=auth(token))
            assert answer.status_code == 403, answer.text
            assert answer.json()["type"] == "urn:careledger:problem:needs-exact-access"
        daily = client.get("/api/counts/grouped", params={"kind": "payment", "group_by": "date"}, headers=auth(token))
        assert daily.status_code == 403
        widened = client.get("/api/counts/grouped", params={"kind": "payment", "group_by": "month",
                                                            "from": "2024-03-10", "to": "2024-04-09"},
                             headers=auth(token)).json()
        assert (widened["from"], widened["to"]) == ("2024-03-01", "2024-04-30")
        assert [r["month"] for r in widened["rows"]] == ["2024-03", "2024-04"]
    exact = client.get("/api/counts", params={"kind": "payment", "from": "2024-01-01", "to": "2024-03-10"},
                       headers=auth(tokens["admin"]))
    assert exact.status_code == 200 and exact.json()["events"] > 0
