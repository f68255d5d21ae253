"""Aggregates (policy ``viewer``): counts, grouped counts, the half-year report, targets.

Who sees exact numbers: admins; caseworkers for their own towns; anonymous callers only where the
deployment sets ``anonymous_aggregates = "exact"``.  Everyone else is answered from the published
table of ``projections/api/suppression.py`` (small cells suppressed, with complements).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from careledger import clock
from projections.api.auth import Principal
from projections.api.context import Api
from projections.api.guard import Caller
from projections.api.models import Counts, Grouped, Report, Targets
from projections.api.params import DateFrom, DateTo, GroupColumn, Key, Kind, Snapshot, Town
from projections.api.problems import responses
from projections.api.report import current_half, load_targets, report_lines, report_row
from projections.api.suppression import (
    ZERO,
    month_label,
    refuse_daily,
    refuse_range,
    standard_period,
    whole_months,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
router = APIRouter(tags=["aggregates"])
REFUSED = "Without exact access: a range that is not a calendar period, or daily rows (docs/privacy.md)"


def today_shanghai() -> date:
    return clock.utc_now().astimezone(SHANGHAI).date()


def sees_exact(api: Api, caller: Principal, town: str | None) -> bool:
    """Admins everything; caseworkers their own towns; anonymous callers when the deployment keeps
    open counts (``anonymous_aggregates = "exact"``)."""
    if caller.anonymous:
        return api.settings.anonymous_aggregates == "exact"
    return caller.is_admin or (caller.role == "caseworker" and caller.may_see_town(town))


@router.get("/api/counts", summary="Events, persons, amount, positions (CONTRACT §2)", response_model=Counts,
            response_model_exclude_unset=True, responses=responses(404, s403=REFUSED))
def counts(
    api: Api,
    caller: Caller,
    kind: Annotated[Kind, Query(description="what to count")],
    key: Key = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    town: Town = None,
    snapshot: Snapshot = None,
) -> dict[str, Any]:
    """CONTRACT §2.  Without exact access (see docs/privacy.md) `from`/`to` must be a calendar month,
    quarter, half-year or year (or both absent: all time), else 403; small cells, and the cells that
    would reveal them, come back with every measure null and `suppressed: true`."""
    source = api.source(snapshot)
    if kind == "posting" or sees_exact(api, caller, town):
        return source.counts(kind, key, date_from, date_to, town)
    period = standard_period(date_from, date_to)
    if period is None:
        raise refuse_range()
    return api.published.table(source, kind).cell(town, key, period)


@router.get("/api/counts/grouped", summary="Counts grouped by town, month, key and/or date", response_model=Grouped,
            response_model_exclude_unset=True, responses=responses(s403=REFUSED))
def grouped(
    api: Api,
    caller: Caller,
    kind: Annotated[Kind, Query()],
    group_by: Annotated[list[GroupColumn], Query(min_length=1, max_length=4,
                                                 description="repeat for several: group_by=town&group_by=month")],
    date_from: DateFrom = None,
    date_to: DateTo = None,
    town: Town = None,
    key: Key = None,
) -> dict[str, Any]:
    """One row per group that has events.  Without exact access: month rows are whole months (the
    range is widened, and `from`/`to` say so), other rows need a calendar period as for /api/counts,
    daily rows (`group_by=date`) answer 403."""
    columns = list(dict.fromkeys(group_by))
    store = api.store
    exact_all = caller.is_admin or (caller.anonymous and api.settings.anonymous_aggregates == "exact")
    if kind == "posting" or exact_all or (town is not None and sees_exact(api, caller, town)):
        rows = store.grouped_counts(kind, columns, key=key, date_from=date_from, date_to=date_to, town=town)
        return {"group_by": columns, "rows": rows}
    if "date" in columns:
        raise refuse_daily()
    published = api.published.table(store, kind)
    answer: dict[str, Any] = {"group_by": columns}
    if "month" in columns:
        lo, hi = whole_months(date_from, date_to)
        periods = [m for m in published.dimension(2) if len(m) == 7 and m[4] == "-"
                   and (lo is None or m >= month_label(lo)) and (hi is None or m <= month_label(hi))]
        if (lo, hi) != (date_from, date_to):
            answer.update({"from": lo.isoformat() if lo else None, "to": hi.isoformat() if hi else None})
    else:
        period = standard_period(date_from, date_to)
        if period is None:
            raise refuse_range()
        periods = [period]
    towns: list[str | None] = [town] if town is not None else (
        list(published.dimension(0)) if "town" in columns else [None])
    keys: list[str | None] = [key] if key is not None else (list(published.dimension(1)) if "key" in columns
                                                            else [None])
    rows = []
    for t in towns:
        exact = t is not None and sees_exact(api, caller, t)
        for k in keys:
            for p in periods:
                cell = published.cell(t, k, p, exact=exact)
                if not cell.get("suppressed") and cell == ZERO:
                    continue  # like the store: no row for an empty group
                labels = {"town": t, "key": k, "month": p}
                rows.append({**{c: labels[c] for c in columns}, **cell})
    rows.sort(key=lambda r: tuple(r[c] for c in columns))
    answer["rows"] = rows
    return answer


@router.get("/api/report", summary="The half-year report table (default: the current half)", response_model=Report,
            response_model_exclude_unset=True, responses=responses(s403=REFUSED))
def report(api: Api, caller: Caller, date_from: DateFrom = None, date_to: DateTo = None) -> dict[str, Any]:
    """One row per line of the packaged report definition (report.csv).  Without exact access the
    period must be a calendar period, as for /api/counts."""
    if date_from is None or date_to is None:
        half_from, half_to = current_half(today_shanghai())
        date_from, date_to = date_from or half_from, date_to or half_to
    exact = caller.is_admin or (caller.anonymous and api.settings.anonymous_aggregates == "exact")
    period = standard_period(date_from, date_to)
    if not exact and period is None:
        raise refuse_range()
    rows = []
    for line in report_lines():
        if exact or line.kind == "posting":
            answer = api.store.counts(line.kind, line.key, date_from, date_to, None)
        else:
            answer = api.published.table(api.store, line.kind).cell(None, line.key, str(period))
        rows.append(report_row(line, answer))
    return {"from": date_from.isoformat(), "to": date_to.isoformat(), "rows": rows}


@router.get("/api/targets", summary="Progress against careledger/targets.csv", response_model=Targets,
            response_model_exclude_unset=True)
def targets(api: Api, caller: Caller) -> dict[str, Any]:
    exact = caller.is_admin or (caller.anonymous and api.settings.anonymous_aggregates == "exact")
    items = []
    for target in load_targets(api.settings.targets_path):
        if exact or target.kind == "posting":
            shown = api.store.counts(target.kind, target.key, target.date_from, target.date_to, None)
        else:
            label = standard_period(target.date_from, target.date_to)
            shown = api.published.table(api.store, target.kind).cell(None, target.key, str(label))
        current = shown["persons"] if target.kind != "posting" else shown["positions"]
        items.append({
            "metric": target.metric, "kind": target.kind, "key": target.key, "label_zh": target.label_zh,
            "period": target.period, "from": target.date_from.isoformat(), "to": target.date_to.isoformat(),
            "target": target.target, "measure": "positions" if target.kind == "posting" else "persons",
            "current": current,
            "progress": None if current is None or not target.target else round(current / target.target, 4),
            "note": target.note, **({"suppressed": True} if shown.get("suppressed") else {}),
        })
    return {"items": items}
