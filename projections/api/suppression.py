"""What a caller without exact access sees of the aggregates (docs/privacy.md, "Small cells").

Admins see every cell exactly, caseworkers the cells of their own towns.  Everyone else -- anonymous
callers (unless the deployment sets ``anonymous_aggregates = "exact"``), viewers, caseworkers
outside their towns -- gets every count from one *published table* per kind and store:

- cells: town (or the district) x key (or every key) x period, where a period is a calendar month,
  quarter, half-year, year or all time (``from``/``to`` absent).  A total over any other range is
  refused (403): two ranges that differ by a day would subtract to that day's small cell.  Month
  rows (``group_by=month``) are widened to whole months; daily rows (``group_by=date``) are refused;
- suppression: ``projections.disclosure.protect`` (primary + complementary, audited by linear
  algebra for the public view and for every active caseworker token's towns);
- the table is built from the store's counts in one go and kept until the store has moved on
  (``store.offsets()``) and ``REFRESH_S`` have passed, so a protected answer may be that much behind
  an exact one; every protected answer of a kind comes from the same table, so answers read at the
  same moment can never be combined into a cell the table hides.

Postings (employers' positions, no persons) are never suppressed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from projections.api.problems import NEEDS_EXACT_ACCESS, Problem
from projections.api.report import period_range
from projections.disclosure import ALL, MEASURES, Cell, Table, protect

log = logging.getLogger("careledger.api")

REFRESH_S = 10.0
SUPPRESSED: dict[str, Any] = {"events": None, "persons": None, "amount_fen": None, "positions": None,
                              "suppressed": True}
ZERO = dict.fromkeys(MEASURES, 0)

RANGE_REFUSED = ("without exact access, totals are published for a calendar month, quarter, half-year, year or all "
                 "time only (for example from=2024-01-01&to=2024-06-30, or neither): two ranges that differ by a "
                 "few days would subtract to a small cell.  Admins, and caseworkers for their own towns, may ask "
                 "any range")
DAILY_REFUSED = ("without exact access, rows are published by month at the finest (group_by=month): daily rows "
                 "would reveal small cells.  Admins, and caseworkers for their own towns, may group by date")


# ----------------------------------------------------------------------------- periods
def month_label(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def period_labels(year: int) -> list[str]:
    y = f"{year:04d}"
    return [y, f"{y}H1", f"{y}H2", *(f"{y}Q{q}" for q in range(1, 5)), *(f"{y}-{m:02d}" for m in range(1, 13))]


def standard_period(date_from: date | None, date_to: date | None) -> str | None:
    """The period label of ``[from, to]`` if it is all time, a year, half, quarter or month; else None."""
    if date_from is None and date_to is None:
        return ALL
    if date_from is None or date_to is None:
        return None
    y = f"{date_from.year:04d}"
    for label in (y, f"{y}H{1 if date_from.month <= 6 else 2}", f"{y}Q{(date_from.month - 1) // 3 + 1}",
                  month_label(date_from)):
        if period_range(label) == (date_from, date_to):
            return label
    return None


def whole_months(date_from: date | None, date_to: date | None) -> tuple[date | None, date | None]:
    """``[from, to]`` widened to whole months."""
    first = None if date_from is None else date(date_from.year, date_from.month, 1)
    last = None if date_to is None else period_range(month_label(date_to))[1]
    return first, last


def _months_between(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def time_hierarchy(years: list[int]) -> list[tuple[str, list[str]]]:
    """(parent period, its child periods): all time = the years, a year = its halves, a half = its
    quarters, a quarter = its months."""
    out: list[tuple[str, list[str]]] = [(ALL, [f"{y:04d}" for y in years])]
    for year in years:
        y = f"{year:04d}"
        out += [(y, [f"{y}H1", f"{y}H2"]), (f"{y}H1", [f"{y}Q1", f"{y}Q2"]), (f"{y}H2", [f"{y}Q3", f"{y}Q4"])]
        out += [(f"{y}Q{q}", [f"{y}-{m:02d}" for m in range(3 * q - 2, 3 * q + 1)]) for q in range(1, 5)]
    return out


# ----------------------------------------------------------------------------- the table
def build_table(store: Any, kind: str) -> Table:
    """Every cell of ``kind`` with exact values (distinct persons counted per cell by the store)."""
    values: dict[Cell, dict[str, int]] = {}

    def put(rows: Iterable[dict[str, Any]], town: Callable[[dict[str, Any]], str],
            key: Callable[[dict[str, Any]], str], period: Callable[[dict[str, Any]], str]) -> None:
        for r in rows:
            values[(town(r), key(r), period(r))] = {m: int(r.get(m) or 0) for m in MEASURES}

    def by_town(r: dict[str, Any]) -> str:
        return str(r["town"])

    def by_key(r: dict[str, Any]) -> str:
        return str(r["key"])

    def by_month(r: dict[str, Any]) -> str:
        return str(r["month"])

    def everything(r: dict[str, Any]) -> str:
        return ALL

    for cols, town, key in ((["town", "key"], by_town, by_key), (["town"], by_town, everything),
                            (["key"], everything, by_key), ([], everything, everything)):
        put(store.grouped_counts(kind, [*cols, "month"]), town, key, by_month)
        put(store.grouped_counts(kind, cols), town, key, everything)
    years = sorted({int(p[:4]) for (_t, _k, p) in values if p != ALL})
    for year in years:
        for label in period_labels(year)[:7]:  # year, halves, quarters (months are above)
            lo, hi = period_range(label)
            for cols, town, key in ((["town", "key"], by_town, by_key), (["town"], by_town, everything),
                                    (["key"], everything, by_key), ([], everything, everything)):
                put(store.grouped_counts(kind, cols, date_from=lo, date_to=hi), town, key, lambda r, x=label: x)
    towns = sorted({t for (t, _k, _p) in values if t != ALL})
    keys = sorted({k for (_t, k, _p) in values if k != ALL})
    periods = [ALL, *(label for year in years for label in period_labels(year))]
    table = Table(values)
    for period in periods:
        for key in [ALL, *keys]:
            table.equations.append(((ALL, key, period), tuple((t, key, period) for t in towns)))
        for town in [ALL, *towns]:
            table.equations.append(((town, ALL, period), tuple((town, k, period) for k in keys)))
    for parent, children in time_hierarchy(years):
        for town in [ALL, *towns]:
            for key in [ALL, *keys]:
                table.equations.append(((town, key, parent), tuple((town, key, c) for c in children)))
    return table


@dataclass
class Published:
    """One kind's table, its suppressions, and when and from which store position it was built."""

    table: Table
    suppressed: set[Cell]
    version: Any
    built_at: float
    store: Any = None  # the store it was built from (an id() alone could be reused by another store)

    def cell(self, town: str | None, key: str | None, period: str, exact: bool = False) -> dict[str, Any]:
        c = (town if town is not None else ALL, key if key is not None else ALL, period)
        if c in self.suppressed and not exact:
            return dict(SUPPRESSED)
        return dict(self.table.values.get(c, ZERO))

    def dimension(self, position: int) -> list[str]:
        return sorted({c[position] for c in self.table.values if c[position] != ALL})


class Publisher:
    """The published tables, one per (store, kind).  The first answer of a kind waits for its
    table; afterwards a table is served until it is ``refresh_s`` old and the store has moved on
    (``store.offsets()``), and then rebuilt in the background while the old one is still served
    (building takes seconds on a large district: docs/privacy.md gives figures)."""

    def __init__(self, threshold: int, views: Callable[[], list[tuple[str, ...]]],
                 refresh_s: float = REFRESH_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.views = views
        self.refresh_s = refresh_s
        self.clock = clock
        self._lock = threading.Lock()
        self._tables: dict[tuple[int, str], Published] = {}
        self._building: dict[tuple[int, str], threading.Lock] = {}
        self._refreshing: set[tuple[int, str]] = set()

    def table(self, store: Any, kind: str) -> Published:
        key = (id(store), kind)
        with self._lock:
            found = self._tables.get(key)
            if found is not None and found.store is not store:
                found = None
            building = self._building.setdefault(key, threading.Lock())
        if found is None:
            with building:  # concurrent first requests wait for one build
                with self._lock:
                    found = self._tables.get(key)
                return found if found is not None and found.store is store else self._build(store, kind, key)
        if self.clock() - found.built_at < self.refresh_s:
            return found
        if store.offsets() == found.version:
            found.built_at = self.clock()
            return found
        with self._lock:
            if key in self._refreshing:
                return found
            self._refreshing.add(key)
        threading.Thread(target=self._refresh, args=(store, kind, key, building), daemon=True,
                         name=f"careledger-publish-{kind}").start()
        return found

    def _refresh(self, store: Any, kind: str, key: tuple[int, str], building: threading.Lock) -> None:
        try:
            with building:
                self._build(store, kind, key)
        except Exception:  # noqa: BLE001 - the old table stays; the next request tries again
            log.exception("could not rebuild the published %s table", kind)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _build(self, store: Any, kind: str, key: tuple[int, str]) -> Published:
        version = store.offsets()  # before reading: a table is never newer than its version says
        started = self.clock()
        table = build_table(store, kind)
        published = Published(table, protect(table, self.threshold, [frozenset(v) for v in self.views()]),
                              version, self.clock(), store)
        log.info("published %s table: %d cells, %d hidden, %.2f s", kind, len(table.values),
                 len(published.suppressed), self.clock() - started)
        with self._lock:
            self._tables[key] = published
        return published


def refuse_range() -> Problem:
    return Problem(403, RANGE_REFUSED, type=NEEDS_EXACT_ACCESS, title="Needs exact access")


def refuse_daily() -> Problem:
    return Problem(403, DAILY_REFUSED, type=NEEDS_EXACT_ACCESS, title="Needs exact access")


__all__ = ["REFRESH_S", "SUPPRESSED", "Published", "Publisher", "build_table", "month_label", "refuse_daily",
           "refuse_range", "standard_period", "whole_months"]
