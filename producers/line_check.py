"""The check of one JSON Lines line: decode, validate, pseudonymise - no key store, no Kafka.

Its own module because it runs in two places that must not depend on each other: the ingest
process (``producers.ingest``) and the worker processes that check large files
(``producers.ingest_workers``).
"""

from __future__ import annotations

from producers.pipeline import NO_RULES, Checked, prepare_valid
from producers.pseudonym import Pseudonymiser
from schemas.input_rules import InputRules
from schemas.privacy import has_plain_sensitive
from schemas.validation import Event, InvalidJson, Rejected, parse_json_line, partition_key, validate_event
from schemas.wire import NotFast, fast_input

MAX_LINE_BYTES = 1024 * 1024

#: what the check of one line gives: the event ready to publish, the reasons it was rejected,
#: or None for a blank line
LineOutcome = Checked | list[str] | None
Numbered = tuple[int, bytes | None, int]  # line number, line (None: too long), bytes read


def without_bom(number: int, line: bytes) -> bytes:
    """The line without a UTF-8 byte-order mark that a Windows editor put on line 1."""
    return line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line


def check_line(number: int, line: bytes | None, consumed: int, pseudonymiser: Pseudonymiser,
               limit: int = MAX_LINE_BYTES, rules: InputRules = NO_RULES) -> LineOutcome:
    """Decode, validate and pseudonymise one line (no key store, no Kafka: it may run in a worker
    process).  What needs the key store - refusing erased persons, sealing - happens in
    ``IngestRun.admit``, in the process that publishes the line.  ``schemas.wire.fast_input``
    vouches for most valid lines; the rest get the full check, which gives the reasons.  Either way the same steps follow
    (``pipeline.prepare_valid``), so the outcome does not depend on the path."""
    if line is None:
        return [f"line too long: {consumed} bytes, the limit is {limit}"]
    line = without_bom(number, line)
    if not line.strip():
        return None
    try:
        valid: Event | list[str] = fast_input(line)  # ~5 µs where parse + validate take ~21
    except NotFast:
        valid = _validate(line)
    if isinstance(valid, list):
        return valid
    result, value = prepare_valid(valid, pseudonymiser, rules, seal=False)
    if isinstance(result, Rejected):
        return result.reasons
    event = result.event
    return (event["event_id"], partition_key(event), value, event.get("person_id"),
            event if has_plain_sensitive(event) else None)


def _validate(line: bytes) -> Event | list[str]:
    """The full check of a line the fast decoder did not vouch for: the canonical event, or the
    reasons (invalid UTF-8, invalid JSON, the validator's field-naming reasons)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"invalid UTF-8 at byte {exc.start + 1}"]
    try:
        obj = parse_json_line(text)
    except InvalidJson as exc:
        return [str(exc)]
    result = validate_event(obj)
    if isinstance(result, Rejected):
        return result.reasons
    return result.event


def rejected_record(number: int, line: bytes | None, consumed: int) -> object:
    """What a rejected line leaves in the dead letter and the report (both redact it): the
    parsed object when there is one (redaction then hides ``id_number`` whatever it holds), else
    the text, else the bytes."""
    if line is None:
        return f"<{consumed} bytes, not kept>"
    line = without_bom(number, line)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return line
    try:
        obj = parse_json_line(text)
    except InvalidJson:
        return text
    return obj if isinstance(obj, dict) else text
