"""A spreadsheet as it comes, as rows of text cells: CSV in whatever encoding Excel wrote, or .xlsx.

Excel on Chinese Windows saves "CSV" in GB18030 (GBK), "CSV UTF-8" with a byte-order mark, and
"Unicode text" in UTF-16 with tabs; people also send the workbook itself.  ``open_table`` looks
at the bytes and picks: an .xlsx (a zip) is read with openpyxl (the active sheet, or ``sheet``);
otherwise a BOM decides, else the first :data:`SAMPLE_BYTES` must decode as UTF-8, else as
GB18030.  An explicit ``encoding`` always wins.  Every choice is said (``Table.description``) so a
wrong guess is visible and can be overridden with ``--encoding``.

Cells come out as the text ``producers/csv_layouts.py`` converts: an .xlsx number 500.0 is
``"500"``, a date cell ``"2024-03-05"`` (with the time when it has one), a boolean ``"true"``.
Bytes that are not valid in the chosen encoding stay in the text as surrogate escapes, so the
row holding them is rejected (with a hint) instead of the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Any

SAMPLE_BYTES = 4 * 1024 * 1024  # what the encoding is decided on (a later bad byte rejects its row)
XLSX_MAGIC = b"PK\x03\x04"
DELIMITERS = (",", "\t", ";")

Where = int | str  # a CSV line number, or 'sheet "补贴" row 4'
Rows = Iterator[tuple[Where, list[str]]]


class TableError(ValueError):
    """The file cannot be read as a table at all (not a workbook, no such sheet)."""


@dataclass
class Table:
    rows: Rows  # (where, cells), the header first
    description: str  # what was read and how, e.g. "encoding: gb18030 (detected)"
    letters: bool = False  # reasons name columns by letter too (A, B, ...: a workbook)
    close: Callable[[], None] = lambda: None


# ---- encodings ---------------------------------------------------------------------------------------
def detect_encoding(sample: bytes, complete: bool) -> str:
    """The encoding of a CSV whose first bytes are ``sample`` (``complete``: the whole file)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(sample, final=complete)
        except UnicodeDecodeError:
            continue
        return encoding
    return "utf-8"  # neither: rows with undecodable bytes are rejected one by one


class _Prefixed(io.RawIOBase):
    """``prefix`` (bytes already read to look at them) and then the rest of ``raw``."""

    def __init__(self, prefix: bytes, raw: IO[bytes]) -> None:
        self._prefix, self._raw = memoryview(prefix), raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            size = min(len(buffer), len(self._prefix))
            buffer[:size] = self._prefix[:size]
            self._prefix = self._prefix[size:]
            return size
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_up_to(raw: IO[bytes], size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = raw.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _delimiter(first_line: str) -> str:
    """The separator of the header line: the most frequent of , tab ; (comma when none)."""
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_rows(text: IO[str], delimiter: str) -> Rows:
    """(line number where the row ends, cells); a malformed row yields a reject marker."""
    reader = csv.reader(text, delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, [f"{CSV_ERROR}{exc}"]
            continue
        yield reader.line_num, row


CSV_ERROR = "\x00csv-error:"


def _csv_table(raw: IO[bytes], prefix: bytes, complete: bool, encoding: str | None,
               delimiter: str | None) -> Table:
    how = "--encoding" if encoding else "detected; --encoding to override"
    encoding = encoding or detect_encoding(prefix, complete)
    text = io.TextIOWrapper(io.BufferedReader(_Prefixed(prefix, raw)), encoding=encoding,
                            errors="surrogateescape", newline="")
    if delimiter is None:
        head = prefix[: 64 * 1024].decode(encoding, "replace").lstrip("\ufeff").splitlines()
        delimiter = _delimiter(head[0] if head else "")
    shown = {"\t": "tab"}.get(delimiter, delimiter)
    return Table(csv_rows(text, delimiter), f"encoding: {encoding} ({how}); delimiter: {shown}")


# ---- workbooks -----------------------------------------------------------------------------------
def cell_text(value: Any) -> str:
    """An .xlsx cell value as the text a CSV export of it would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _xlsx_table(data: IO[bytes], sheet: str | None) -> Table:
    import openpyxl  # a few hundred ms of import: only when a workbook comes

    try:
        workbook = openpyxl.load_workbook(data, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise TableError(f"not a readable .xlsx workbook ({type(exc).__name__})") from None
    names = workbook.sheetnames
    if sheet is not None and sheet not in names:
        workbook.close()
        raise TableError(f"no sheet named {sheet!r}; the workbook has: {', '.join(names)}")
    worksheet = workbook[sheet] if sheet is not None else workbook.active
    title = worksheet.title

    def rows() -> Rows:
        first = worksheet.min_row or 1
        for number, values in enumerate(worksheet.iter_rows(values_only=True), start=first):
            yield f'sheet "{title}" row {number}', [cell_text(v) for v in values]

    how = "--sheet" if sheet is not None else "the active sheet; --sheet to choose"
    others = f" (sheets: {', '.join(names)})" if len(names) > 1 else ""
    return Table(rows(), f'workbook: sheet "{title}" ({how}){others}', letters=True, close=workbook.close)


# ---- the one entry point ----------------------------------------------------------------------------
def open_table(raw: IO[bytes], *, encoding: str | None = None, delimiter: str | None = None,
               sheet: str | None = None) -> Table:
    """Rows of ``raw`` (a file or standard input), read as its bytes say (see the module doc)."""
    prefix = _read_up_to(raw, SAMPLE_BYTES)
    if prefix.startswith(XLSX_MAGIC):
        rest = raw.read()  # a zip is read from its end: the whole workbook in memory
        return _xlsx_table(io.BytesIO(prefix + rest), sheet)
    if sheet is not None:
        raise TableError("--sheet is for .xlsx workbooks; this file is CSV")
    complete = len(prefix) < SAMPLE_BYTES
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise TableError(f"unknown encoding {encoding!r} (e.g. utf-8, gb18030, utf-16)") from None
    return _csv_table(raw, prefix, complete, encoding, delimiter)
