"""``careledger simulate``: stream the simulated district to Kafka (default) or to a JSON Lines file."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``500/s``, ``500``, ``30/min``, ``1000/h`` -> events per second."""
    found = _RATE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r} (e.g. 500/s, 30/min)")
    return float(found.group(1)) / _PER[found.group(2)]


class TokenBucket:
    """Smooth pacing at ``rate`` events/s with bursts of at most ``burst`` events."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 10)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.last = clock()

    def take(self, n: float = 1.0) -> None:
        while True:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= n - 1e-9:  # tolerance: float dust must not make it spin
                self.tokens = max(0.0, self.tokens - n)
                return
            self.sleep(max((n - self.tokens) / self.rate, 1e-6))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="generate a realistic, seeded 奉化区 district event stream",
        description="Generate a reproducible district (registrations since 2008, a fully active "
                    "2023Q4 and 2024H1, optionally later months) and publish it to Kafka, or write "
                    "JSON Lines with --out. --calibrate 2024H1 makes the first half of 2024 reproduce "
                    "the federation's h1-report.csv exactly.")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same events; default 42)")
    p.add_argument("--persons", type=int, default=20_000,
                   help="persons registered 2008-2023 (default 20000)")
    p.add_argument("--calibrate", choices=["2024H1"], default=None,
                   help="make 2024-01-01..2024-06-30 reproduce h1-report.csv exactly")
    p.add_argument("--tail-months", type=int, default=0, metavar="N",
                   help="also simulate N months after June 2024 (H1 figures unchanged)")
    p.add_argument("--id-number-fraction", type=float, default=0.0, metavar="F",
                   help="share of persons whose events carry a raw id_number (pseudonymised by the producer)")
    p.add_argument("--resend-fraction", type=float, default=0.0, metavar="F",
                   help="share of events sent twice with the same event_id (at-least-once delivery)")
    p.add_argument("--out", metavar="FILE", help="write JSON Lines to FILE (- for stdout) instead of Kafka")
    p.add_argument("--rate", type=parse_rate, default=None, metavar="N/s",
                   help="pace the stream, e.g. 500/s (default: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N events")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Any = None) -> int:
    """The ``simulate`` subcommand; ``settings`` (default ``Settings.from_env()``) is for tests."""
    from producers.simulate.generator import CalibrationError, SimConfig, generate
    from producers.simulate.report import ReportCounter, load_report

    started = time.monotonic()
    try:
        config = SimConfig(seed=args.seed, persons=args.persons, calibrate=args.calibrate,
                           tail_months=args.tail_months, id_number_fraction=args.id_number_fraction,
                           resend_fraction=args.resend_fraction)
        events = generate(config)
    except (CalibrationError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    check = ReportCounter() if args.calibrate else None
    by_type: Counter[str] = Counter()
    first = last = ""
    sent = 0
    interrupted = False
    bucket = TokenBucket(args.rate) if args.rate else None
    try:
        sink, close = _sink(args, settings)
    except Exception as exc:  # e.g. no broker reachable, unwritable --out
        print(f"simulate: cannot open {args.out or 'kafka'}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    progress = _progress(args)
    failed = None
    try:
        for event in events:
            if args.limit is not None and sent >= args.limit:
                break
            if bucket is not None:
                bucket.take()
            if check is not None:
                check.add(event)
            by_type[event["type"]] += 1
            first = first or event["occurred_at"]
            last = event["occurred_at"]
            sink(event)
            sent += 1
            if sent % 1000 == 0:
                progress.update(1000)
        progress.update(sent % 1000)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        try:
            close()
        except Exception as exc:  # PublishError: some sends were not acknowledged
            failed = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started
    out = sys.stderr
    print(f"simulate: {sent} events ({first[:10]} .. {last[:10]}) in {elapsed:.1f}s incl. planning "
          f"({sent / elapsed if elapsed else 0:.0f}/s) -> {args.out or 'kafka'}", file=out)
    for etype, count in sorted(by_type.items()):
        print(f"  {etype:24s} {count:>9d}", file=out)
    if failed:
        print(f"simulate: {failed}", file=out)
        return 1
    if check is not None and args.limit is None and not interrupted:
        problems = check.compare(load_report())
        if problems:
            print("  calibration 2024H1: MISMATCH " + "; ".join(problems), file=out)
            return 1
        print("  calibration 2024H1: every row of h1-report.csv reproduced", file=out)
    return 130 if interrupted else 0


def _progress(args: argparse.Namespace) -> Any:
    from tqdm import tqdm

    return tqdm(total=args.limit, unit="ev", file=sys.stderr, disable=args.no_progress,
                desc="simulate", mininterval=0.5)


def _sink(args: argparse.Namespace, settings: Any = None) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    if args.out:
        fh: IO[str] = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

        def write(event: dict[str, Any]) -> None:
            fh.write(dumps(event) + "\n")

        def close_file() -> None:
            if fh is sys.stdout:
                fh.flush()
            else:
                fh.close()

        return write, close_file

    from careledger.settings import Settings
    from producers.publisher import EventPublisher

    settings = settings or Settings.from_env()
    publisher = EventPublisher(settings)
    pseudonymiser = None

    def publish(event: dict[str, Any]) -> None:
        nonlocal pseudonymiser
        if "id_number" in event:
            if pseudonymiser is None:
                from producers.pseudonym import Pseudonymiser

                pseudonymiser = Pseudonymiser.from_settings(settings)
            event = pseudonymiser.apply(dict(event))
        publisher.publish(event)

    def close_publisher() -> None:
        publisher.flush()
        publisher.close()

    return publish, close_publisher
