"""``careledger demo`` (what ``make demo`` runs after ``make up``): the calibrated half-year, live.

1. checks that the local stack answers (``make up`` started it);
2. streams the calibrated 2024H1 simulation (``SimConfig(calibrate="2024H1")``) to Kafka with a
   progress bar, optionally paced (``--rate 2000/s``) so the dashboard visibly fills up;
3. waits until ``/api/status`` says every projection caught up;
4. prints the dashboard URL, where the admin token is, and headline figures read back from
   ``/api/report`` -- checked line by line against the federation's h1-report.csv -- and the
   caseworkers' work list at the end of the half-year (``/api/warnings?as_of=2024-06-30``, per rule).

``--tail-months N`` also streams N simulated months after June 2024 (the H1 figures stay exact), so
the dashboard has a second half-year, where the federation's 2024H2 targets show progress.

Idempotent: the simulator is seeded, so a second run sends the same events with the same
``event_id``s and the processors count each event once (CONTRACT §1); the report stays equal.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

H1_FROM, H1_TO = "2024-01-01", "2024-06-30"
HEADLINES = ("living_subsidy", "nursing_subsidy", "home_visit", "new_employment", "new_registrations")
WARNING_RULES = (("visit_overdue", "入户访视逾期"), ("need_unmet", "需求未满足"), ("certificate_expiring", "残疾证即将到期"),
                 ("nursing_subsidy_missing", "护理补贴未发放"))


def register(sub: argparse._SubParsersAction) -> None:
    from producers.simulate.cli import parse_rate

    p = sub.add_parser(
        "demo", help="stream the calibrated 2024H1 simulation into the running stack; print the dashboard URL",
        description="Stream the seeded district simulation calibrated to the federation's 2024H1 report "
                    "into the stack started by `make up`, wait until the processors caught up, and print "
                    "the dashboard URL and the report's headline figures. Safe to run again: the same "
                    "events (same event_ids) are counted once.")
    p.add_argument("--rate", type=parse_rate, default=None, metavar="N/s",
                   help="pace the stream (e.g. 2000/s) to watch the dashboard fill up; default: full speed")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    p.add_argument("--tail-months", type=int, default=0, metavar="N",
                   help="also stream N simulated months after June 2024 (2024H1 stays exact; default 0)")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                   help="seconds to wait for the processors to catch up (default 1800)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- HTTP helpers
def _get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback URL we built
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


def _admin_token(settings: Any) -> str | None:
    try:
        return settings.admin_token_path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def published_report() -> list[dict[str, str]]:
    """The federation's h1-report.csv (shared/domain when present, else the packaged copy)."""
    repo = Path(__file__).resolve().parent.parent
    for path in (repo.parent / "shared" / "domain" / "h1-report.csv",
                 repo / "producers" / "simulate" / "h1-report.csv"):
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                return list(csv.DictReader(fh))
    raise FileNotFoundError("h1-report.csv not found")


def compare_report(rows: list[dict[str, Any]], published: list[dict[str, str]]) -> list[str]:
    """Differences between /api/report rows and the published report (empty list: equal)."""
    by_metric = {r["metric"]: r for r in rows}
    problems = []
    for want in published:
        got = by_metric.get(want["metric"])
        if got is None:
            problems.append(f"{want['metric']}: missing from /api/report")
            continue
        checks = [("persons", want["persons"], got.get("persons")), ("events", want["events"], got.get("events"))]
        if want["amount_yuan"]:
            checks.append(("amount_fen", str(int(Decimal(want["amount_yuan"]) * 100)), got.get("amount_fen")))
        if "positions" in want["note"]:
            checks.append(("positions", want["note"].split()[0], got.get("positions")))
        for field, expected, actual in checks:
            if expected and str(actual) != expected:
                problems.append(f"{want['metric']}.{field}: {actual} (published {expected})")
    return problems


# ----------------------------------------------------------------------------- steps
def _stream(settings: Any, args: argparse.Namespace, out: Any) -> int:
    from tqdm import tqdm

    from producers.publisher import EventPublisher
    from producers.simulate.cli import TokenBucket
    from producers.simulate.generator import SimConfig, generate

    started = time.monotonic()
    print("demo: planning the calibrated 2024H1 district (seeded: same events every run) ...", file=out)
    events = list(generate(SimConfig(calibrate="2024H1", seed=args.seed, tail_months=args.tail_months)))
    bucket = TokenBucket(args.rate) if args.rate else None
    bar = tqdm(total=len(events), unit="ev", desc="publish", file=sys.stderr, disable=args.no_progress,
               mininterval=0.5, dynamic_ncols=True)
    with EventPublisher(settings) as publisher:
        for n, event in enumerate(events, start=1):
            if bucket is not None:
                bucket.take()
            publisher.publish(event)  # sealed by the publisher, keys created in batches
            if n % 500 == 0:
                bar.update(500)
        bar.update(len(events) % 500)
        bar.set_description("flush")
    bar.close()
    print(f"demo: {len(events):,} events ({events[0]['occurred_at'][:10]} .. {events[-1]['occurred_at'][:10]}) "
          f"published to {settings.topics.events} in {time.monotonic() - started:.1f}s", file=out)
    return len(events)


def _wait_caught_up(settings: Any, token: str | None, published: int, args: argparse.Namespace, out: Any) -> bool:
    from tqdm import tqdm

    deadline = time.monotonic() + args.timeout
    bar = None
    last_note = ""
    while time.monotonic() < deadline:
        status, body = _get(settings.api_url + "/api/status", token)
        if status == 200 and isinstance(body, dict):
            end = sum((body.get("events_end_offsets") or {}).values())
            done = max(0, end - int(body.get("lag") or 0))
            if bar is None:
                bar = tqdm(total=end, unit="ev", desc="process", file=sys.stderr, disable=args.no_progress,
                           mininterval=0.5, dynamic_ncols=True)
            bar.total = end
            bar.n = done
            bar.refresh()
            if body.get("caught_up") and end >= published:
                bar.close()
                return True
        else:
            note = (body or {}).get("detail") if isinstance(body, dict) else None
            note = f"status {status}: {note or 'no answer'}"
            if note != last_note:
                print(f"demo: waiting for /api/status ({note})", file=out)
                last_note = note
        time.sleep(1.0)
    if bar is not None:
        bar.close()
    return False


def _pad(text: str, width: int) -> str:
    """Left-justify to a terminal width (CJK characters take two columns)."""
    import unicodedata

    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(1, width - used)


def _print_report(settings: Any, token: str | None, out: Any) -> bool:
    status, body = _get(f"{settings.api_url}/api/report?from={H1_FROM}&to={H1_TO}", token)
    if status != 200:
        print(f"demo: /api/report answered {status}: {body}", file=out)
        return False
    rows = {r["metric"]: r for r in body["rows"]}
    print(f"\n  2024年上半年 headline figures (/api/report?from={H1_FROM}&to={H1_TO}):", file=out)
    for metric in HEADLINES:
        row = rows.get(metric)
        if row is None:
            continue
        persons = row.get("persons") if metric not in ("living_subsidy", "nursing_subsidy") else None
        parts = [f"{persons:>9,} 人" if persons is not None else " " * 12,
                 f"{row['events']:>9,} 人次" if row.get("events") is not None else " " * 14]
        if row.get("amount_fen"):
            parts.append(f"{row['amount_fen'] / 1_000_000:>10,.2f} 万元")
        print("    " + _pad(row["label_zh"], 26) + "  ".join(parts), file=out)
    payments = sum(r.get("amount_fen") or 0 for r in body["rows"] if r["kind"] == "payment")
    print("    " + _pad("补贴发放合计 (8 programs)", 26) + " " * 30 + f"{payments / 1_000_000:>10,.2f} 万元", file=out)
    problems = compare_report(body["rows"], published_report())
    if problems:
        print("  report check: DIFFERS from h1-report.csv: " + "; ".join(problems), file=out)
        return False
    print(f"  report check: all {len(rows)} lines equal the federation's h1-report.csv", file=out)
    return True


def print_warnings(settings: Any, token: str | None, out: Any, as_of: str = H1_TO) -> dict[str, int] | None:
    """The work list at ``as_of``: how many need warnings of each rule (None without an admin token)."""
    if token is None:
        return None
    totals: dict[str, int] = {}
    for rule, _ in WARNING_RULES:
        status, body = _get(f"{settings.api_url}/api/warnings?as_of={as_of}&rule={rule}&limit=0", token)
        if status != 200 or not isinstance(body, dict):
            print(f"demo: /api/warnings answered {status}", file=out)
            return None
        totals[rule] = int(body["total"])
    print(f"\n  需求预警 work list as of {as_of} (/api/warnings?as_of={as_of}): {sum(totals.values()):,}", file=out)
    for rule, label in WARNING_RULES:
        print("    " + _pad(f"{label} {rule}", 40) + f"{totals[rule]:>7,}", file=out)
    return totals


def run(args: argparse.Namespace, settings: Any = None, out: Any = None) -> int:
    from careledger.settings import get_settings
    from infra.stack import effective_settings

    out = out or sys.stdout
    settings = settings or effective_settings(get_settings())
    status, _ = _get(settings.api_url + "/healthz", timeout=3.0)
    if status != 200:
        print(f"demo: the API at {settings.api_url} does not answer: start the stack first "
              "(`make up`, or `make demo` which does both)", file=out)
        return 1
    token = _admin_token(settings)
    try:
        published = _stream(settings, args, out)
    except Exception as exc:  # broker down, unacknowledged sends: re-running is safe
        print(f"demo: publishing failed: {type(exc).__name__}: {exc} (safe to run again)", file=out)
        return 1
    if not _wait_caught_up(settings, token, published, args, out):
        print(f"demo: the processors did not catch up within {args.timeout:.0f}s; see {settings.logs_dir}", file=out)
        return 1
    ok = _print_report(settings, token, out)
    print_warnings(settings, token, out)
    print(f"\n  dashboard    {settings.api_url}/", file=out)
    print(f"  admin token  {settings.admin_token_path}  (paste it into the dashboard's 访问令牌 field "
          "for the alerts inbox and need warnings)", file=out)
    print("  caseworker   .venv/bin/careledger token create --name 溪口镇社工 --role caseworker --towns 溪口镇", file=out)
    print("               (a caseworker's token shows the work queues and persons of their towns, with names:"
          " docs/caseworker-guide.md)", file=out)
    print(f"  API docs     {settings.api_url}/docs", file=out)
    print("  running `careledger demo` again is harmless: the same event_ids are counted once", file=out)
    return 0 if ok else 1
