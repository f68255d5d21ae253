"""``careledger import-csv [--type TYPE] PATH``: a federation's spreadsheet export as events.

The header row picks the layout (``producers/csv_layouts.py``, documented in docs/csv-import.md);
every row becomes one event dict that goes through exactly the same pipeline as ``ingest``
(validation, pseudonymisation, in-run de-duplication, dead letters, report, exit codes).  Reasons
name the line and the column.  Columns no layout knows (姓名, 序号, 备注 ...) are ignored, so they
never reach Kafka.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from careledger.settings import Settings
from producers.csv_layouts import (
    ENVELOPE_COLUMNS,
    LAYOUT_NAMES,
    LAYOUTS,
    OPTIONAL_PAYLOAD,
    TYPE_COLUMN,
    CellError,
    Column,
)
from producers.ingest import close_run
from producers.pipeline import IngestRun, ReportWriter, input_rules
from producers.pseudonym import Pseudonymiser, redact_text
from producers.publisher import EventPublisher, PublishError
from producers.spreadsheet import CSV_ERROR, Rows, Table, TableError, Where, open_table
from producers.state_errors import state_error_message, state_write_error
from schemas import enums
from schemas.text import printable
from schemas.validation import Accepted, validate_event

__all__ = ["LAYOUT_NAMES", "HeaderError", "Binding", "bind_header", "detect_type", "row_to_event",
           "import_rows", "run_import_csv"]

MAX_FIELD_CHARS = 64 * 1024


class HeaderError(ValueError):
    """The header row does not fit the layout: nothing in the file can be imported."""


@dataclass
class Binding:
    """Header positions resolved against one layout (or every layout, for a 事件类型 column)."""

    headers: list[str]
    event_type: str | None  # None: per row, from the type column
    letters: bool = False  # name columns by letter too (a workbook: column C "金额(元)")
    columns: dict[int, Column] = field(default_factory=dict)  # position -> column
    ignored: list[str] = field(default_factory=list)
    _per_type: dict[str, dict[int, Column]] = field(default_factory=dict, repr=False)

    def columns_for(self, event_type: str) -> dict[int, Column]:
        """Positions -> that type's own columns (per-row types share headers like 用人单位)."""
        if self.event_type is not None:
            return self.columns
        if event_type not in self._per_type:
            own = ENVELOPE_COLUMNS + LAYOUTS[event_type]
            self._per_type[event_type] = {
                position: column
                for position in self.columns
                if (column := next((c for c in own if c.matches(self.headers[position])), None))
            }
        return self._per_type[event_type]

    def header_of(self, path: str) -> str | None:
        for position, column in self.columns.items():
            if column.field == path:
                return self.headers[position]
        return None

    def label(self, position: int) -> str:
        """How reasons name a column: ``column "金额(元)"``, in a workbook ``column C "金额(元)"``."""
        letter = f"{_column_letter(position)} " if self.letters else ""
        return f'column {letter}"{self.headers[position]}"'

    def label_of(self, path: str) -> str | None:
        for position, column in self.columns.items():
            if column.field == path:
                return self.label(position)
        return None


def _column_letter(position: int) -> str:
    letters, number = "", position + 1
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _candidates(event_type: str | None) -> tuple[Column, ...]:
    if event_type is not None:
        return ENVELOPE_COLUMNS + LAYOUTS[event_type]
    seen: list[Column] = [TYPE_COLUMN, *ENVELOPE_COLUMNS]
    for layout in LAYOUTS.values():
        seen += [c for c in layout if c not in seen]
    return tuple(seen)


def detect_type(headers: list[str]) -> str | None:
    """The layout whose required columns are all present (None: a 事件类型 column decides per row).

    Raises HeaderError when no layout or more than one fits."""
    if any(TYPE_COLUMN.matches(h) for h in headers):
        return None
    fitting = [
        name for name, layout in LAYOUTS.items()
        if name != "person.profile_changed"
        and all(any(c.matches(h) for h in headers) for c in layout if c.required)
    ]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise HeaderError("cannot tell the event type from the header; pass --type (one of: "
                          + ", ".join(LAYOUT_NAMES) + ")")
    raise HeaderError("the header fits several layouts (" + ", ".join(fitting) + "); pass --type")


def bind_header(headers: list[str], event_type: str | None, *, letters: bool = False) -> Binding:
    binding = Binding([_text(h).strip().lstrip("\ufeff") for h in headers], event_type, letters=letters)
    candidates = _candidates(event_type)
    for position, header in enumerate(binding.headers):
        column = next((c for c in candidates if c.matches(header)), None)
        if column is None:
            if header:
                binding.ignored.append(header)
            continue
        if any(c.field == column.field for c in binding.columns.values()) and column.field != "type":
            raise HeaderError(f'{binding.label(position)}: a second column for {column.field}')
        binding.columns[position] = column
    layout_required = [c for c in (ENVELOPE_COLUMNS + (LAYOUTS[event_type] if event_type else ()))
                       if c.required]
    bound = {c.field for c in binding.columns.values()}
    missing = [f'{c.headers[0]} ({c.field})' for c in layout_required if c.field not in bound]
    if event_type is not None and event_type not in enums.PERSONLESS_TYPES \
            and not bound & {"id_number", "certificate_no", "person_id"}:
        missing.append("身份证号 (id_number) or 人员编号 (person_id)")
    if missing:
        raise HeaderError("missing column(s): " + ", ".join(missing))
    return binding


def row_to_event(binding: Binding, row: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """One CSV row -> (event dict for validation, cell-level reasons naming the columns)."""
    event_type = binding.event_type
    reasons: list[str] = []
    if event_type is None:
        position = next(p for p, c in binding.columns.items() if c.field == "type")
        cell = row[position] if position < len(row) else ""
        event_type = TYPE_COLUMN.convert(cell) if cell.strip() else None
        if event_type not in LAYOUTS:
            return None, [f'{binding.label(position)} (type): must be one of: '
                          + ", ".join(LAYOUT_NAMES)]
    event: dict[str, Any] = {"type": event_type, "payload": {}}
    for position, column in binding.columns_for(event_type).items():
        cell = row[position] if position < len(row) else ""
        if any("\udc80" <= ch <= "\udcff" for ch in cell):  # undecodable bytes (surrogateescape)
            reasons.append(f'{binding.label(position)} ({column.field}): not valid text in the '
                           "file's encoding (the summary says which was used; override it with --encoding)")
            continue
        if not cell.strip():
            continue
        try:
            value = column.convert(cell)
        except CellError as exc:
            reasons.append(f'{binding.label(position)} ({column.field}): {exc}')
            continue
        if column.field.startswith("payload."):
            event["payload"][column.field.removeprefix("payload.")] = value
        else:
            event[column.field] = value
    certificate_id = event.pop("certificate_no", None)
    if certificate_id is not None:
        if "id_number" not in event:
            event["id_number"] = certificate_id
        elif event["id_number"].upper() != certificate_id.upper():
            reasons.append(f'{binding.label_of("certificate_no")} (id_number): does not belong to '
                           f'the ID number in {binding.label_of("id_number")}')
    for path, default in OPTIONAL_PAYLOAD.items():
        name = path.removeprefix("payload.")
        if any(c.field == path for c in LAYOUTS[event_type]) and name not in event["payload"] \
                and default is not None:
            event["payload"][name] = list(default)
    if event_type == "visit.completed" and binding.header_of("payload.duration_minutes"):
        event.setdefault("version", 2)  # the v2 layout: duration_minutes may be blank
    return event, reasons


def _name_columns(binding: Binding, reasons: list[str]) -> list[str]:
    """Prefix validation reasons ("payload.x: ...") with the CSV column that holds the field."""
    out = []
    for reason in reasons:
        path, sep, rest = reason.partition(":")
        base = path.split("[")[0].strip()
        label = binding.label_of(base)
        if label is None and base == "person_id":
            label = binding.label_of("id_number") or binding.label_of("certificate_no")
        if label is None and base == "id_number":
            label = binding.label_of("certificate_no")
        out.append(f"{label} ({path}){sep}{rest}" if label and sep else reason)
    return out


def _other_reasons(binding: Binding, event: dict[str, Any], cell_reasons: list[str]) -> list[str]:
    result = validate_event(event)
    if isinstance(result, Accepted):
        return []
    failed = {r.split("(", 1)[1].split(")", 1)[0] for r in cell_reasons if "(" in r}
    if "id_number" in failed:
        failed.add("person_id")
    return [r for r in _name_columns(binding, result.reasons) if r.split(":", 1)[0].split("[")[0] not in failed
            and not any(f"({f})" in r.split(":", 1)[0] for f in failed)]


def _text(cell: str) -> str:
    """A cell as it can be written to a report or a dead letter: bytes that were not valid in the
    file's encoding (kept as surrogate escapes by the reader) become U+FFFD."""
    if not any("\udc80" <= ch <= "\udcff" for ch in cell):
        return cell
    return cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def import_rows(rows: Iterable[tuple[Where, list[str]]], binding: Binding, run: IngestRun) -> None:
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        # Only the columns that make the event are kept: 姓名 and the like stay out of dead letters.
        record = {_text(binding.headers[p]): _text(row[p]) for p in binding.columns if p < len(row)}
        if len(row) > len(binding.headers):
            record["(extra cells)"] = len(row) - len(binding.headers)
        event, reasons = row_to_event(binding, row)
        if reasons or event is None:
            if event is not None:  # also report what else is wrong, in the same pass
                reasons += _other_reasons(binding, event, reasons)
            run.reject(line, reasons, record)
            continue
        run.handle(line, event, record, explain=lambda r: _name_columns(binding, r))


class _CountingReader(io.RawIOBase):
    """Feeds the bytes-based progress bar while the text layer reads."""

    def __init__(self, raw: IO[bytes], bar: tqdm) -> None:
        self._raw, self._bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._bar.update(len(data))
        return len(data)


def run_import_csv(settings: Settings, path: str, *, event_type: str | None = None,
                   encoding: str | None = None, delimiter: str | None = None, sheet: str | None = None,
                   dry_run: bool = False, progress: bool | None = None, out: IO[str] = sys.stdout,
                   err: IO[str] = sys.stderr) -> int:
    """The command body; exit 1 with one clear line when the state directory is full or read-only.
    ``encoding`` / ``delimiter`` None: detected (``producers/spreadsheet.py``); ``sheet``: of a
    workbook (default the active one)."""
    try:
        return _run_import_csv(settings, path, event_type=event_type, encoding=encoding, delimiter=delimiter,
                               sheet=sheet, dry_run=dry_run, progress=progress, out=out, err=err)
    except Exception as exc:
        reason = state_write_error(exc)
        if reason is None:
            raise
        print(state_error_message("import-csv", settings.home, reason), file=err)
        return 1


def _run_import_csv(settings: Settings, path: str, *, event_type: str | None, encoding: str | None,
                    delimiter: str | None, sheet: str | None, dry_run: bool, progress: bool | None,
                    out: IO[str], err: IO[str]) -> int:
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    try:
        raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"import-csv: cannot open {printable(path)}: {exc.strerror}", file=err)
        return 1
    source = "-" if path == "-" else str(Path(path))
    disable = True if path == "-" or progress is False else (False if progress else None)
    bar = tqdm(total=None if path == "-" else Path(path).stat().st_size, unit="B", unit_scale=True,
               desc="import-csv", file=err, disable=disable, leave=False)
    csv.field_size_limit(MAX_FIELD_CHARS)
    publisher = report = None
    table: Table | None = None
    try:
        try:
            table = open_table(_CountingReader(raw, bar), encoding=encoding, delimiter=delimiter, sheet=sheet)
        except TableError as exc:
            print(f"import-csv: {exc}; nothing imported", file=err)
            return 2
        rows = table.rows
        header_line = next(rows, None)
        try:
            if header_line is None:
                raise HeaderError("the file is empty")
            headers = header_line[1]
            chosen = event_type or detect_type(headers)
            binding = bind_header(headers, chosen, letters=table.letters)
        except HeaderError as exc:
            print(f"import-csv: header: {exc}; nothing imported ({table.description})", file=err)
            return 2
        if not dry_run:
            try:
                publisher = EventPublisher(settings)
            except Exception as exc:  # noqa: BLE001
                print(f"import-csv: cannot connect to Kafka at {settings.kafka_bootstrap}: {exc}", file=err)
                return 1
        report = ReportWriter(settings, "import-csv")
        run = IngestRun(Pseudonymiser.from_settings(settings), publisher, report, source, input_rules(settings))
        import_rows(_with_csv_errors(rows, run), binding, run)
        bar.close()
        try:
            if publisher is not None:
                publisher.flush()
        except PublishError as exc:
            print(f"import-csv: {exc}. Re-running the same file is safe (rows carry event ids).", file=err)
            return 1
        print(table.description, file=out)
        print(f"layout: {chosen or 'per row (事件类型 column)'}", file=out)
        if binding.ignored:
            # header cells are data too: a stray ID number there is masked like in any report
            print("ignored columns: " + ", ".join(map(redact_text, binding.ignored)), file=out)
        for line in run.summary_lines():
            print(line, file=out)
        if dry_run:
            print("dry run: nothing was published", file=out)
        return 0 if run.stats.rejected == 0 else 2
    finally:
        bar.close()
        if table is not None:
            table.close()
        close_run(report, publisher, raw)


def _with_csv_errors(rows: Rows, run: IngestRun) -> Rows:
    for line, row in rows:
        if len(row) == 1 and row[0].startswith(CSV_ERROR):
            run.reject(line, ["row: not valid CSV (" + row[0].removeprefix(CSV_ERROR) + ")"], "<row not kept>")
            continue
        yield line, row
