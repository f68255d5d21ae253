"""``careledger export``: the event history from the log to typed Parquet, CSV or ClickHouse.

Read with the replay fast path (``processors.replay``): every event is decoded, upcast to the
current version and unsealed exactly as the projections see it - a forgotten person's events come
out erased (tombstone id, no sensitive values), never restored.  Events never carry raw ID numbers
(``decode_consumed`` rejects one that does): the export holds pseudonymous ``person_id`` s only,
and the ``sealed`` box of an event is never written.

**Parquet** is a directory with one file per event type, ``OUT/<type>.parquet``, whose columns are
the envelope (``occurred_at`` a timestamp with zone, ``date`` a date32 in Asia/Shanghai) and that
type's payload fields as typed columns (dates date32, amounts int64 fen, lists as lists), from
the models (``schemas/catalogue.py``); ``OUT/manifest.json`` says what was written and skipped.
One line of DuckDB reads a type: ``SELECT * FROM 'OUT/payment.disbursed.parquet'`` (docs/export.md).

**Sensitive fields** (``schemas/privacy.py``: health, birth date, hardship, hazards ...) are left
out unless the caller asks for them (``include_sensitive``; the command wants an admin token).

CSV cells that a spreadsheet would run as a formula - starting with ``=``, ``+``, ``-``, ``@``,
tab or carriage return - are prefixed with ``'`` (OWASP "CSV injection").  ClickHouse exports go
through ``ClickHouseStore`` (its event-history table, ``projection = 'export'``), so an export can
be resumed and is effectively-once like any projection.

Files are written 0600 in directories created 0700, under a temporary name first (a reader never
sees a half-written export).  A record the export cannot turn into a row (say a timestamp that
overflows once converted to UTC, already on the log) is skipped, counted and reported with its
position and reason: the export of everything else goes on.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from careledger.settings import Settings
from projections.audit_tables import NamedOnce
from schemas import enums
from schemas.catalogue import ENVELOPE, FieldSpec, payload_fields
from schemas.models import parse_timestamp
from schemas.privacy import sensitive_fields
from schemas.validation import SHANGHAI, event_date

COLUMNS = ("event_id", "type", "version", "occurred_at", "date", "person_id", "town", "village", "source",
           "payload", "kafka_partition", "kafka_offset")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_SKIPS_KEPT = 100  # skipped records listed in the result and the manifest (all are counted)
ROWS_PER_WRITE = 10_000
BeforeWrite = Callable[[list[Any]], None]
"""Called with each batch of ``Consumed`` before it is written."""


def escape_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in a CSV cell (strings only; numbers are written as is)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@dataclass(frozen=True)
class ExportFilter:
    types: frozenset[str] | None = None
    date_from: str | None = None
    date_to: str | None = None
    towns: frozenset[str] | None = None

    @classmethod
    def build(cls, types: Iterable[str] | None = None, date_from: str | None = None, date_to: str | None = None,
              towns: Iterable[str] | None = None) -> ExportFilter:
        chosen = frozenset(types) if types else None
        if chosen is not None:
            unknown = sorted(chosen - set(enums.EVENT_TYPES))
            if unknown:
                raise ValueError(f"--type: unknown event type(s) {unknown}; one of {list(enums.EVENT_TYPES)}")
        for name, value in (("--from", date_from), ("--to", date_to)):
            if value is not None:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"{name}: expected YYYY-MM-DD") from None
        if date_from and date_to and date_from > date_to:
            raise ValueError("--from is after --to")
        return cls(chosen, date_from, date_to, frozenset(towns) if towns else None)

    def match(self, event: dict[str, Any], day: str) -> bool:
        if self.types is not None and event["type"] not in self.types:
            return False
        if self.towns is not None and event.get("town") not in self.towns:
            return False
        if self.date_from is not None and day < self.date_from:
            return False
        return self.date_to is None or day <= self.date_to


def _without_sensitive(event: dict[str, Any]) -> dict[str, Any]:
    payload = event.get("payload") or {}
    hidden = sensitive_fields(event["type"])
    return {k: v for k, v in payload.items() if k not in hidden}


def persons_with_sensitive_fields(batch: Iterable[Any]) -> set[str]:
    """The persons whose sensitive fields (schemas/privacy.py) a batch of ``Consumed`` holds: what an
    export that includes them discloses, person by person (an erased person's events hold none)."""
    persons: set[str] = set()
    for rec in batch:
        event = rec.event
        if event is None or event.get("erased") or not event.get("person_id"):
            continue
        hidden = sensitive_fields(event["type"])
        if hidden and any(name in hidden for name in event.get("payload") or {}):
            persons.add(event["person_id"])
    return persons


class AuditLog(Protocol):
    """What the audit of an export needs of the API's audit log (``TokenStore``)."""

    def add_audit_subjects(self, audit_id: int, person_ids: Iterable[str]) -> None: ...


class SensitiveExportAudit:
    """``before_write`` of an export that includes sensitive fields: names each person whose
    sensitive fields a batch holds under the command's audit row before the batch is written
    (``audit_subjects``, like the persons of an API list), each person once."""

    def __init__(self, log: AuditLog, audit_id: int) -> None:
        self.log = log
        self.audit_id = audit_id
        self.once = NamedOnce()

    def __call__(self, batch: list[Any]) -> None:
        persons = self.once.fresh(persons_with_sensitive_fields(batch))
        if persons:
            self.log.add_audit_subjects(self.audit_id, persons)


def export_row(event: dict[str, Any], day: str, partition: int, offset: int, *,
               include_sensitive: bool = False) -> dict[str, Any]:
    """One CSV row: the envelope as text and the payload as JSON (sensitive fields left out
    unless ``include_sensitive``)."""
    payload = dict(event.get("payload") or {}) if include_sensitive else _without_sensitive(event)
    return {
        "event_id": event["event_id"], "type": event["type"], "version": int(event.get("version") or 1),
        "occurred_at": str(event["occurred_at"]), "date": day, "person_id": event.get("person_id"),
        "town": event.get("town"), "village": event.get("village"), "source": event.get("source"),
        "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        "kafka_partition": partition, "kafka_offset": offset,
    }


# ---- typed rows (Parquet) -------------------------------------------------------------------------
def columns_of(event_type: str, include_sensitive: bool) -> list[FieldSpec]:
    """The payload columns of ``event_type`` in a typed export."""
    return [f for f in payload_fields(event_type) if include_sensitive or not f.sensitive]


def _typed(spec_kind: str, value: Any) -> Any:
    if value is None:
        return None
    if spec_kind == "date":
        return date.fromisoformat(value)
    if spec_kind == "timestamp":
        return parse_timestamp(value).astimezone(UTC)
    if spec_kind.startswith("list of "):
        return [_typed(spec_kind.removeprefix("list of "), v) for v in value]
    return value


def typed_row(event: dict[str, Any], partition: int, offset: int, columns: list[FieldSpec]) -> dict[str, Any]:
    """One Parquet row of ``event``: typed values; raises (ValueError, OverflowError ...) for a
    record that cannot be one, which the export skips and reports."""
    moment = parse_timestamp(event["occurred_at"]).astimezone(UTC)  # OverflowError beyond year 9999
    payload = event.get("payload") or {}
    row = {
        "event_id": event["event_id"], "type": event["type"], "version": int(event.get("version") or 1),
        "occurred_at": moment, "date": moment.astimezone(SHANGHAI).date(), "person_id": event.get("person_id"),
        "town": event.get("town"), "village": event.get("village"), "source": event.get("source"),
        "erased": bool(event.get("erased")), "kafka_partition": partition, "kafka_offset": offset,
    }
    for spec in columns:
        row[spec.name] = _typed(spec.kind, payload.get(spec.name))
    return row


def arrow_schema(event_type: str, include_sensitive: bool) -> Any:
    import pyarrow as pa  # the export's own dependency; the rest of careledger never needs it

    def arrow_type(kind: str, maximum: int | None) -> Any:
        if kind.startswith("list of "):
            return pa.list_(arrow_type(kind.removeprefix("list of "), None))
        if kind == "integer":
            return pa.int8() if maximum is not None and maximum <= 127 else (
                pa.int16() if maximum is not None and maximum <= 32767 else pa.int64())
        return {"date": pa.date32(), "timestamp": pa.timestamp("us", tz="Asia/Shanghai"), "boolean": pa.bool_(),
                "string": pa.string(), "month": pa.string()}[kind]

    envelope = [
        ("event_id", pa.string()), ("type", pa.string()), ("version", pa.int32()),
        ("occurred_at", pa.timestamp("us", tz="Asia/Shanghai")), ("date", pa.date32()),
        ("person_id", pa.string()), ("town", pa.string()), ("village", pa.string()), ("source", pa.string()),
        ("erased", pa.bool_()), ("kafka_partition", pa.int32()), ("kafka_offset", pa.int64()),
    ]
    described = {f.name: f.rule for f in ENVELOPE}
    fields = [pa.field(name, kind, metadata={"description": described.get(name, "")}) for name, kind in envelope]
    fields += [pa.field(f.name, arrow_type(f.kind, f.maximum), metadata={"description": f.rule})
               for f in columns_of(event_type, include_sensitive)]
    return pa.schema(fields, metadata={"careledger.event_type": event_type,
                                       "careledger.sensitive": "included" if include_sensitive else "left out"})


# ---- reading the log --------------------------------------------------------------------------------
@dataclass
class Skips:
    """Records the export could not write: counted, the first MAX_SKIPS_KEPT listed."""

    count: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    listed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, partition: int, offset: int, event: dict[str, Any] | None, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        self.count += 1
        self.by_reason[reason] += 1
        if len(self.listed) < MAX_SKIPS_KEPT:
            self.listed.append({"partition": partition, "offset": offset,
                                "event_id": (event or {}).get("event_id"), "reason": reason})


def iter_events(settings: Settings, flt: ExportFilter, progress: bool = False,
                stats: dict[str, int] | None = None, skips: Skips | None = None,
                before_write: BeforeWrite | None = None) -> Iterator[list[Any]]:
    """Batches of ``Consumed`` from the whole log (snapshot of its end at the start); events not
    matching ``flt`` come as ``event=None`` so positions stay complete.  An event whose date
    cannot even be computed is skipped (``skips``) and comes as None too.  ``before_write(batch)``
    runs before a batch is handed on (the audit of whose data an export holds); if it raises,
    the batch is not written."""
    from tqdm import tqdm

    from processors.domain.model import Consumed
    from processors.privacy import keystore_for
    from processors.replay.engine import BuildStats, decode_records
    from processors.replay.reader import log_bounds, read_log
    from processors.runtime.decoding import RecordDecoder

    starts, ends = log_bounds(settings)
    counters = BuildStats()
    decoder = RecordDecoder(lambda raw, reasons: None, lambda create: keystore_for(settings, create))
    skips = skips if skips is not None else Skips()
    bar = tqdm(total=sum(ends[p] - starts[p] for p in ends), unit="ev", unit_scale=True, desc="export",
               disable=not progress)
    try:
        for chunk in read_log(settings, starts, ends):
            batch = []
            for rec in decode_records(decoder, chunk, None, counters)[0]:
                event = rec.event
                if event is not None:
                    event.pop("sealed", None)
                    try:
                        keep = flt.match(event, event_date(event))
                    except (ValueError, OverflowError, KeyError, TypeError) as exc:
                        skips.add(rec.partition, rec.offset, event, exc)
                        keep = False
                    if not keep:
                        event = None
                batch.append(Consumed(rec.partition, rec.offset, event))
            bar.update(len(chunk))
            if before_write is not None:
                before_write(batch)
            yield batch
    finally:
        bar.close()
        if stats is not None:
            stats["read"] = counters.records
            stats["poison"] = decoder.poison


# ---- writing ------------------------------------------------------------------------------------------
def _private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) 0700; an existing directory is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # whatever the umask


def _private_file(path: Path) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _export_csv(settings: Settings, flt: ExportFilter, path: Path, progress: bool, stats: dict[str, int],
                skips: Skips, include_sensitive: bool, before_write: BeforeWrite | None) -> int:
    _private_dir(path.parent)
    tmp = path.with_name(path.name + ".partial")
    rows = 0
    with _private_file(tmp) as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for batch in iter_events(settings, flt, progress, stats, skips, before_write):
            for r in batch:
                if r.event is None:
                    continue
                try:
                    row = export_row(r.event, event_date(r.event), r.partition, r.offset,
                                     include_sensitive=include_sensitive)
                except (ValueError, OverflowError, KeyError, TypeError) as exc:
                    skips.add(r.partition, r.offset, r.event, exc)
                    continue
                writer.writerow([escape_cell(row[c]) for c in COLUMNS])
                rows += 1
    tmp.replace(path)  # a reader never sees a half-written export
    return rows


def _export_parquet(settings: Settings, flt: ExportFilter, out: Path, progress: bool, stats: dict[str, int],
                    skips: Skips, include_sensitive: bool, before_write: BeforeWrite | None) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "manifest.json").exists())):
        raise ValueError(f"--out {out}: exists and is not an earlier export (a directory with manifest.json); "
                         "choose a new directory")
    _private_dir(out.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))  # 0700
    writers: dict[str, Any] = {}
    pending: dict[str, list[dict[str, Any]]] = {}
    counts: Counter[str] = Counter()

    def flush(event_type: str) -> None:
        rows = pending.pop(event_type, [])
        if not rows:
            return
        schema = arrow_schema(event_type, include_sensitive)
        try:
            table = pa.Table.from_pylist(rows, schema=schema)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            good = []
            for row in rows:  # find the row(s) Arrow refuses, keep the others
                try:
                    pa.Table.from_pylist([row], schema=schema)
                except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                    skips.add(row["kafka_partition"], row["kafka_offset"], row, exc)
                    counts[event_type] -= 1
                    continue
                good.append(row)
            table = pa.Table.from_pylist(good, schema=schema)
        if event_type not in writers:
            target = work / f"{event_type}.parquet"
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            writers[event_type] = pq.ParquetWriter(target, schema, compression="zstd")
        writers[event_type].write_table(table)

    columns = {t: columns_of(t, include_sensitive) for t in enums.EVENT_TYPES}
    try:
        for batch in iter_events(settings, flt, progress, stats, skips, before_write):
            for r in batch:
                if r.event is None:
                    continue
                event_type = r.event["type"]
                try:
                    row = typed_row(r.event, r.partition, r.offset, columns[event_type])
                except (ValueError, OverflowError, KeyError, TypeError) as exc:
                    skips.add(r.partition, r.offset, r.event, exc)
                    continue
                pending.setdefault(event_type, []).append(row)
                counts[event_type] += 1
                if len(pending[event_type]) >= ROWS_PER_WRITE:
                    flush(event_type)
        for event_type in list(pending):
            flush(event_type)
    except BaseException:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(work, ignore_errors=True)
        raise
    for writer in writers.values():
        writer.close()
    manifest = {
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "layout": "one Parquet file per event type: <type>.parquet",
        "filter": {"types": sorted(flt.types) if flt.types else None, "from": flt.date_from, "to": flt.date_to,
                   "towns": sorted(flt.towns) if flt.towns else None},
        "sensitive_fields": "included" if include_sensitive else "left out",
        "rows": {t: n for t, n in sorted(counts.items()) if n},
        "skipped": skips.count, "skipped_reasons": dict(skips.by_reason), "skipped_records": skips.listed,
        **stats,
    }
    with _private_file(work / "manifest.json") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=1)
    _swap_in(work, out)
    return {t: n for t, n in counts.items() if n}


def _swap_in(work: Path, out: Path) -> None:
    """Put the finished directory in place; an earlier export there goes only once it has."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    work.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(settings: Settings, fmt: str, out: str, flt: ExportFilter | None = None,
           progress: bool = False, *, include_sensitive: bool = False,
           before_write: BeforeWrite | None = None) -> dict[str, Any]:
    """Export the log; returns ``rows``, ``out``, ``read``, ``poison``, ``skipped`` (and, for Parquet,
    ``by_type``; ``skipped_records``: the first skipped positions with their reason).
    ``before_write``: see :func:`iter_events`."""
    flt = flt or ExportFilter()
    stats: dict[str, int] = {}
    skips = Skips()
    if fmt == "clickhouse":
        from projections.clickhouse.store import ClickHouseStore

        rows = 0
        store = ClickHouseStore(out, projection="export", topic=settings.topics.events)
        try:
            store.migrate()
            for batch in iter_events(settings, flt, progress, stats, skips, before_write):
                rows += store.apply_batch(batch)
        finally:
            store.close()
        return {"rows": rows, "out": out, "skipped": skips.count, "skipped_records": skips.listed, **stats}
    path = Path(out)
    if fmt == "csv":
        rows = _export_csv(settings, flt, path, progress, stats, skips, include_sensitive, before_write)
        return {"rows": rows, "out": str(path), "skipped": skips.count, "skipped_records": skips.listed, **stats}
    if fmt == "parquet":
        by_type = _export_parquet(settings, flt, path, progress, stats, skips, include_sensitive, before_write)
        return {"rows": sum(by_type.values()), "by_type": by_type, "out": str(path), "skipped": skips.count,
                "skipped_records": skips.listed, **stats}
    raise ValueError(f"unknown format {fmt!r} (parquet, csv, clickhouse)")
