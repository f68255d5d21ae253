"""``careledger export``: the event history from the log to Parquet, CSV or ClickHouse.

Read with the replay fast path (``processors.replay``): every event is decoded, upcast to the
current version and unsealed exactly as the projections see it - a forgotten person's events come
out erased (tombstone id, no sensitive values), never restored.  Events never carry raw ID numbers
(``decode_consumed`` rejects one that does): the export holds pseudonymous ``person_id`` s only,
and the ``sealed`` box of an event (if no key store is configured) is never written.

CSV cells that a spreadsheet would run as a formula - starting with ``=``, ``+``, ``-``, ``@``,
tab or carriage return - are prefixed with ``'`` (OWASP "CSV injection").  ClickHouse exports go
through ``ClickHouseStore`` (its event-history table, ``projection = 'export'``), so an export can
be resumed and is effectively-once like any projection.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from careledger.settings import Settings

COLUMNS = ("event_id", "type", "version", "occurred_at", "date", "person_id", "town", "village", "source",
           "payload", "kafka_partition", "kafka_offset")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
        from schemas import enums

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


def export_row(event: dict[str, Any], day: str, partition: int, offset: int) -> dict[str, Any]:
    payload = dict(event.get("payload") or {})
    return {
        "event_id": event["event_id"], "type": event["type"], "version": int(event.get("version") or 1),
        "occurred_at": str(event["occurred_at"]), "date": day, "person_id": event.get("person_id"),
        "town": event.get("town"), "village": event.get("village"), "source": event.get("source"),
        "payload": json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        "kafka_partition": partition, "kafka_offset": offset,
    }


def iter_events(settings: Settings, flt: ExportFilter, progress: bool = False,
                stats: dict[str, int] | None = None) -> Iterator[list[Any]]:
    """Batches of ``Consumed`` from the whole log (snapshot of its end at the start); events not
    matching ``flt`` come as ``event=None`` so positions stay complete."""
    from tqdm import tqdm

    from processors.domain.calendar import event_date
    from processors.domain.model import Consumed
    from processors.privacy import keystore_for
    from processors.replay.engine import BuildStats, decode_records
    from processors.replay.reader import log_bounds, read_log
    from processors.runtime.decoding import RecordDecoder

    starts, ends = log_bounds(settings)
    counters = BuildStats()
    decoder = RecordDecoder(lambda raw, reasons: None, lambda create: keystore_for(settings, create))
    bar = tqdm(total=sum(ends[p] - starts[p] for p in ends), unit="ev", unit_scale=True, desc="export",
               disable=not progress)
    try:
        for chunk in read_log(settings, starts, ends):
            batch = []
            for rec in decode_records(decoder, chunk, None, counters)[0]:
                event = rec.event
                if event is not None:
                    event.pop("sealed", None)
                    if not flt.match(event, event_date(event["occurred_at"])):
                        event = None
                batch.append(Consumed(rec.partition, rec.offset, event))
            bar.update(len(chunk))
            yield batch
    finally:
        bar.close()
        if stats is not None:
            stats["read"] = counters.records
            stats["poison"] = decoder.poison


def export(settings: Settings, fmt: str, out: str, flt: ExportFilter | None = None,
           progress: bool = False) -> dict[str, Any]:
    from processors.domain.calendar import event_date

    flt = flt or ExportFilter()
    stats: dict[str, int] = {}
    rows = 0
    if fmt == "clickhouse":
        from projections.clickhouse.store import ClickHouseStore

        store = ClickHouseStore(out, projection="export", topic=settings.topics.events)
        try:
            store.migrate()
            for batch in iter_events(settings, flt, progress, stats):
                rows += store.apply_batch(batch)
        finally:
            store.close()
        return {"rows": rows, "out": out, **stats}

    def row_batches() -> Iterator[list[dict[str, Any]]]:
        for batch in iter_events(settings, flt, progress, stats):
            yield [export_row(r.event, event_date(r.event["occurred_at"]), r.partition, r.offset)
                   for r in batch if r.event is not None]

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if fmt == "csv":
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for batch in row_batches():
                writer.writerows([escape_cell(r[c]) for c in COLUMNS] for r in batch)
                rows += len(batch)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.int64() if c in ("version", "kafka_offset") else
                             pa.int32() if c == "kafka_partition" else pa.string()) for c in COLUMNS])
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in row_batches():
                if batch:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    rows += len(batch)
    else:
        raise ValueError(f"unknown format {fmt!r} (parquet, csv, clickhouse)")
    tmp.replace(path)  # a reader never sees a half-written export
    return {"rows": rows, "out": str(path), **stats}
