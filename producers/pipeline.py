"""What every producer front-end (JSON Lines, CSV, HTTP) does with one input record.

validate -> pseudonymise -> refuse stray ID numbers -> drop repeats of an event_id within the run
-> publish, or dead-letter with reasons.  Keeping this in one place means the three front-ends
cannot disagree on what is accepted.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from careledger.settings import Settings
from producers.keystore import PersonForgotten
from producers.pseudonym import Pseudonymiser, contains_id_number, redact
from producers.publisher import EventPublisher, encode
from schemas.input_rules import InputRules
from schemas.privacy import has_plain_sensitive
from schemas.text import Loc, dotted, has_astral, string_paths, surrogate_problems
from schemas.validation import Accepted, Event, Rejected, partition_key, validate_event

Verdict = Literal["accepted", "duplicate", "rejected"]
#: a record validated and pseudonymised elsewhere (maybe in a worker process), ready to publish:
#: event_id, partition key, wire value, person_id, and the event itself when its sensitive fields
#: are still in clear (the publisher seals it; None: send the wire value as it is)
Checked = tuple[str, str, bytes, str | None, Event | None]
MAX_REASONS_PRINTED = 50
MAX_REJECTS_KEPT = 1000
FORGOTTEN = "person_id: this person was erased (careledger forget); their events are no longer accepted"


NO_RULES = InputRules()  # no master data: only for callers without settings (benchmarks)


def input_rules(settings: Settings) -> InputRules:
    """The input rules of this configuration: its towns and its ``occurred_at`` window."""
    return InputRules(towns=settings.towns, earliest=settings.occurred_at_earliest,
                      ahead_days=settings.occurred_at_ahead_days)


def prepare(obj: object, pseudonymiser: Pseudonymiser, rules: InputRules = NO_RULES, *,
            seal: bool = True) -> tuple[Accepted | Rejected, bytes | None]:
    """Validate and pseudonymise one decoded record, apply the input rules (towns, time window,
    clean text: ``schemas/input_rules.py``), refuse stray ID numbers and events of erased
    persons; returns the verdict and the (plain) wire bytes.  Sensitive fields are sealed by the
    publisher (docs/privacy.md), which creates new persons' data keys in batches.
    ``seal=False`` (a dry run) skips the key store."""
    result = validate_event(obj)
    if isinstance(result, Rejected):
        return result, None
    return prepare_valid(result.event, pseudonymiser, rules, seal=seal)


def prepare_valid(event: Event, pseudonymiser: Pseudonymiser, rules: InputRules = NO_RULES, *,
                  seal: bool = True) -> tuple[Accepted | Rejected, bytes | None]:
    """:func:`prepare` from a canonical event that ``validate_event`` accepted (or would: the
    JSON Lines fast path, ``schemas.wire.fast_input``), so both paths go through the same steps."""
    event = pseudonymiser.apply(event)
    try:
        value = encode(event)
    except (UnicodeEncodeError, TypeError):  # a lone surrogate the schema let through: never sent
        return Rejected([f"{dotted(loc)}: {problem}" for loc, problem in surrogate_problems(event)]
                        or ["event: cannot be written as UTF-8 JSON"]), None
    text = value.decode("utf-8")
    astral = has_astral(text)
    reasons, changed = rules.apply(event, text, astral=astral)
    if reasons:
        return Rejected(reasons), None
    if changed:
        value = encode(event)
        text = value.decode("utf-8")
    if contains_id_number(text, astral=astral):
        leaks = [loc for loc, found in string_paths(event) if _may_leak(loc, found)]
        if leaks:
            return Rejected([
                f"{dotted(loc)}: contains what looks like a national ID number; send ID numbers only as id_number"
                for loc in leaks
            ]), None
    if seal and is_forgotten(pseudonymiser, event.get("person_id")):
        return Rejected([FORGOTTEN]), None
    return Accepted(event), value


_PSEUDONYM = re.compile(r"p[0-9a-f]{32}")


def _may_leak(loc: Loc, text: str) -> bool:
    """A string that holds an ID number; a person_id in careledger's own pseudonym form is a hex
    digest (its digits are not an ID number whatever they look like)."""
    if loc == ("person_id",) and _PSEUDONYM.fullmatch(text):
        return False
    return contains_id_number(text)


def is_forgotten(pseudonymiser: Pseudonymiser, person_id: str | None) -> bool:
    """The person was erased (``careledger forget``): their events are no longer accepted."""
    if not person_id or pseudonymiser.sealer is None:
        return False
    try:
        pseudonymiser.sealer.check(person_id)
    except PersonForgotten:
        return True
    return False


@dataclass
class Reject:
    line: int | str
    reasons: list[str]


@dataclass
class RunStats:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)


class ReportWriter:
    """JSON Lines of rejects under ``settings.reports_dir`` (mode 0600, redacted records).

    Reports hold the same rejected records as the dead-letter topic, sensitive fields in clear,
    so they are kept as long: each new report first removes those older than
    ``settings.dlq_retention_days`` (-1: never); ``pruned`` says how many."""

    def __init__(self, settings: Settings, kind: str) -> None:
        settings.reports_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.retention_days = settings.dlq_retention_days
        self.pruned = prune_reports(settings.reports_dir, self.retention_days)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.path: Path = settings.reports_dir / f"{kind}-{stamp}-{secrets.token_hex(3)}.jsonl"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, origin: dict[str, Any], reasons: list[str], record: Any) -> None:
        line = {**redact(origin), "reasons": [redact(r) for r in reasons], "record": redact(record)}
        self._fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        self._fh.close()


def prune_reports(reports_dir: Path, retention_days: float) -> int:
    """Remove reject reports last written more than ``retention_days`` ago; returns how many.
    A file that cannot be removed (read-only state directory) is left for the next run."""
    if retention_days < 0:
        return 0
    cutoff = time.time() - retention_days * 86_400
    removed = 0
    for report in reports_dir.glob("*.jsonl"):
        try:
            if report.stat().st_mtime < cutoff:
                report.unlink()
                removed += 1
        except OSError:
            continue
    return removed


class IngestRun:
    """One ingest run: counts, in-run de-duplication, publishing, dead letters and the report.

    ``publisher`` may be None for a dry run (validate only).  ``report`` may be None (HTTP).
    ``rules``: the configuration's input rules (:func:`input_rules`)."""

    def __init__(self, pseudonymiser: Pseudonymiser, publisher: EventPublisher | None,
                 report: ReportWriter | None, source: str, rules: InputRules) -> None:
        self.pseudonymiser = pseudonymiser
        self.rules = rules
        self.publisher = publisher
        self.report = report
        self.source = source
        self.stats = RunStats()
        self._seen: set[str] = set()

    def reject(self, line: int | str, reasons: list[str], record: Any) -> Verdict:
        reasons = [redact(r) for r in reasons]
        origin = redact({"source": self.source, "line": line})
        self.stats.rejected += 1
        if len(self.stats.rejects) < MAX_REJECTS_KEPT:  # the report has them all
            self.stats.rejects.append(Reject(line, reasons))
        if self.publisher is not None:
            self.publisher.publish_dlq(record, reasons, origin)
        if self.report is not None:
            self.report.write(origin, reasons, record)
        return "rejected"

    def handle(self, line: int | str, obj: object, record: Any,
               explain: Callable[[list[str]], list[str]] | None = None) -> Verdict:
        """``obj`` is the decoded record; ``record`` what to keep (redacted) if it is rejected;
        ``explain`` rewrites field-path reasons for the front-end (e.g. naming CSV columns)."""
        result, value = prepare(obj, self.pseudonymiser, self.rules, seal=self.publisher is not None)
        if isinstance(result, Rejected):
            reasons = explain(result.reasons) if explain else result.reasons
            return self.reject(line, reasons, record)
        event = result.event
        assert value is not None
        # prepare() refused an erased person already: no person_id for admit() to check again
        checked = (event["event_id"], partition_key(event), value, None,
                   event if has_plain_sensitive(event) else None)
        return self.settle(line, self.admit(checked), lambda: record)

    def take(self, line: int, outcome: Checked | list[str], record: Callable[[], Any]) -> Verdict:
        """:meth:`handle` for a line checked elsewhere (``producers.line_check.check_line``, maybe in
        a worker process): its reasons, or the :data:`Checked` event.  Here, in
        input order, come the steps that need this process's state: refusing erased persons,
        in-run de-duplication, publishing.  ``record()`` gives what to keep of a rejected line."""
        if isinstance(outcome, list):
            return self.reject(line, outcome, record())
        return self.settle(line, self.admit(outcome), record)

    def admit(self, outcome: Checked) -> Verdict | list[str]:
        """The steps of :meth:`take` that need the key store and the producer, without counting:
        refuse an erased person (its reasons), drop a repeat, or publish.  Ingest's worker
        processes run this for their share of the lines; :meth:`settle` counts the verdict."""
        event_id, key, value, person_id, plain = outcome
        if self.publisher is not None and is_forgotten(self.pseudonymiser, person_id):
            return [FORGOTTEN]
        if event_id in self._seen:
            return "duplicate"
        self._seen.add(event_id)
        if self.publisher is not None:
            self.publisher.publish_encoded(key, value, plain=plain)
        return "accepted"

    def settle(self, line: int | str, verdict: Verdict | list[str], record: Callable[[], Any]) -> Verdict:
        """Count what :meth:`admit` decided (here or in a worker process); reasons are rejected
        here: the dead letter and the report hold ``record()``."""
        if isinstance(verdict, list):
            return self.reject(line, verdict, record())
        if verdict == "duplicate":
            self.stats.duplicates += 1
        else:
            self.stats.accepted += 1
        return verdict

    def summary_lines(self, limit: int = MAX_REASONS_PRINTED) -> list[str]:
        s = self.stats
        out = [f"accepted: {s.accepted}", f"duplicates: {s.duplicates}", f"rejected: {s.rejected}"]
        for reject in s.rejects[:limit]:
            where = f"line {reject.line}" if isinstance(reject.line, int) else str(reject.line)
            out += [f"  {where}: {reason}" for reason in reject.reasons]
        if s.rejected > min(limit, len(s.rejects)):
            out.append(f"  ... and {s.rejected - min(limit, len(s.rejects))} more rejected (see the report)")
        if self.report is not None:
            out.append(f"report: {self.report.path}")
            if self.report.pruned:
                out.append(f"removed {self.report.pruned} reject report(s) older than "
                           f"{self.report.retention_days:g} days (CARELEDGER_DLQ_RETENTION_DAYS)")
        return out
