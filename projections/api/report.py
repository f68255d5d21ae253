"""The half-year report table and progress against targets, computed from a store's counts.

``report.csv`` (next to this module) is careledger's packaged report definition: one row per
line of the federation's half-year report, with its ``metric``, count ``kind``, ``key`` and
Chinese label (its other columns are a published reference and are not used).  Targets come from
``settings.targets_path`` (``metric,kind,key,label_zh,period,target,note``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

REPORT_CSV = Path(__file__).resolve().parent / "report.csv"
COUNT_KINDS = ("payment", "service", "visit", "job", "need", "person", "posting")


@dataclass(frozen=True)
class ReportLine:
    metric: str
    kind: str
    key: str | None
    label_zh: str


@dataclass(frozen=True)
class Target:
    metric: str
    kind: str
    key: str | None
    label_zh: str
    period: str
    date_from: date
    date_to: date
    target: int
    note: str


class DefinitionError(ValueError):
    pass


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _kind(value: str, where: str) -> str:
    kind = (value or "").strip()
    if kind not in COUNT_KINDS:
        raise DefinitionError(f"{where}: kind {kind!r} is not one of {', '.join(COUNT_KINDS)}")
    return kind


@lru_cache(maxsize=4)
def report_lines(path: Path = REPORT_CSV) -> tuple[ReportLine, ...]:
    lines = []
    for n, row in enumerate(_rows(path), start=2):
        where = f"{path.name} line {n}"
        lines.append(ReportLine(metric=row["metric"].strip(), kind=_kind(row["kind"], where),
                                key=(row.get("key") or "").strip() or None, label_zh=row["label_zh"].strip()))
    return tuple(lines)


_PERIOD = re.compile(r"^(?P<year>\d{4})(?:(?P<half>H[12])|(?P<quarter>Q[1-4])|-(?P<month>0[1-9]|1[0-2]))?$")


def period_range(period: str) -> tuple[date, date]:
    """``2024`` -> whole year, ``2024H1``/``2024H2`` -> half, ``2024Q3`` -> quarter, ``2024-07`` -> month."""
    m = _PERIOD.match(period.strip())
    if not m:
        raise DefinitionError(f"period {period!r}: expected YYYY, YYYYH1, YYYYH2, YYYYQ1..4 or YYYY-MM")
    year = int(m["year"])
    if m["half"]:
        first, last = (1, 6) if m["half"] == "H1" else (7, 12)
    elif m["quarter"]:
        q = int(m["quarter"][1])
        first, last = 3 * q - 2, 3 * q
    elif m["month"]:
        first = last = int(m["month"])
    else:
        first, last = 1, 12
    end = date(year + 1, 1, 1) if last == 12 else date(year, last + 1, 1)
    return date(year, first, 1), date.fromordinal(end.toordinal() - 1)


def load_targets(path: Path) -> tuple[Target, ...]:
    targets = []
    for n, row in enumerate(_rows(path), start=2):
        where = f"{path.name} line {n}"
        try:
            date_from, date_to = period_range(row["period"])
            value = int(row["target"])
        except (DefinitionError, ValueError, KeyError) as exc:
            raise DefinitionError(f"{where}: {exc}") from None
        targets.append(Target(metric=row["metric"].strip(), kind=_kind(row["kind"], where),
                              key=(row.get("key") or "").strip() or None, label_zh=row["label_zh"].strip(),
                              period=row["period"].strip(), date_from=date_from, date_to=date_to,
                              target=value, note=(row.get("note") or "").strip()))
    return tuple(targets)


def current_half(today: date) -> tuple[date, date]:
    return period_range(f"{today.year}H{1 if today.month <= 6 else 2}")


def amount_yuan(amount_fen: int | None) -> float | None:
    return None if amount_fen is None else round(amount_fen / 100, 2)


def report_row(line: ReportLine, counts: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "metric": line.metric, "kind": line.kind, "key": line.key, "label_zh": line.label_zh,
        "persons": counts.get("persons"), "events": counts.get("events"),
        "amount_fen": counts.get("amount_fen") if line.kind == "payment" else None,
        "amount_yuan": amount_yuan(counts.get("amount_fen")) if line.kind == "payment" else None,
        "positions": counts.get("positions") if line.kind == "posting" else None,
    }
    if counts.get("suppressed"):
        row["suppressed"] = True
    return row
