"""An in-memory columnar index of the ledger's count facts: ``/api/counts`` in milliseconds.

Why: a count of distinct persons over a wide date range is a ``COUNT(DISTINCT)`` over hundreds of
thousands of rows - a second on SQLite at 1M events (issue 13 measured a p99 of 1,124 ms).  The
same question over numpy columns is a slice (rows are sorted by kind and date), a mask for the
key and town, and a scatter of person numbers into a bitmap: a few milliseconds, exactly.

The index mirrors the ledger and stays exact:

* every query first *refreshes*: rows with a ``seq`` above the last one seen are appended to an
  unsorted *tail*, and rows listed in ``ledger_changes`` since the last change seen (reversals
  that stop a payment counting, erasure moving rows to a tombstone) are read again and updated in
  place - two indexed queries, usually empty;
* when the tail grows past ``MERGE_AT`` rows (or a tenth of the base) it is merged into the
  sorted *base* (a numpy lexsort: ~0.2 s per million rows, once per ``MERGE_AT`` new events).

Dates are days since 0001-01-01 (``date.toordinal``), persons, keys and towns small integers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from projections.sql import tables as t
from projections.sql.eventrow import check_group_by, check_kind

MERGE_AT = 50_000
COLUMNS = ("kind", "key", "town", "date", "person", "amount", "positions", "counted", "seq")
_DTYPES = {"kind": np.int8, "key": np.int32, "town": np.int32, "date": np.int32, "person": np.int32,
           "amount": np.int64, "positions": np.int64, "counted": np.bool_, "seq": np.int64}
IntArray = npt.NDArray[Any]


class _Codes:
    """Text ↔ small integer (``""`` is 0 for persons: job postings have no person)."""

    def __init__(self, first: str | None = None) -> None:
        self.code: dict[str, int] = {}
        self.text: list[str] = []
        if first is not None:
            self.of(first)

    def of(self, text: str) -> int:
        code = self.code.get(text)
        if code is None:
            code = self.code[text] = len(self.text)
            self.text.append(text)
        return code


@dataclass
class _Segment:
    columns: dict[str, IntArray]

    @classmethod
    def empty(cls) -> _Segment:
        return cls({c: np.zeros(0, dtype=_DTYPES[c]) for c in COLUMNS})

    def __len__(self) -> int:
        return len(self.columns["seq"])


class CountsIndex:
    """Counts and grouped counts of one SQL read model (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self.kinds, self.keys, self.towns, self.persons = _Codes(), _Codes(), _Codes(), _Codes("")
        self._base = _Segment.empty()
        self._tail_rows: list[tuple[int, ...]] = []
        self._tail = _Segment.empty()
        self._max_seq = 0
        self._max_change = 0
        self._kind_bounds: dict[int, tuple[int, int]] = {}
        self._by_seq: IntArray = np.zeros(0, dtype=np.int64)  # base positions ordered by seq

    # ---- keeping up with the ledger -------------------------------------------------------------
    def refresh(self) -> None:
        """Catch up with the ledger.  Sequence numbers are committed in order (one writer per
        projection: SQLite's lock, PostgreSQL's advisory lock), so reading up to the highest one
        seen first never skips a row committed later."""
        L, ch = t.ledger, t.ledger_changes
        with self.engine.connect() as conn:
            top_seq = conn.scalar(select(func.max(L.c.seq))) or 0
            top_change = conn.scalar(select(func.max(ch.c.change_seq))) or 0
            new = conn.execute(select(L.c.seq, L.c.kind, L.c.key, L.c.town, L.c.date, L.c.person_id, L.c.amount_fen,
                                      L.c.positions, L.c.counted)
                               .where(L.c.seq > self._max_seq, L.c.seq <= top_seq, L.c.kind.is_not(None))
                               .order_by(L.c.seq)).all() if top_seq > self._max_seq else []
            changed = conn.execute(select(L.c.seq, L.c.key, L.c.person_id, L.c.counted).where(L.c.seq.in_(
                select(ch.c.row_seq).where(ch.c.change_seq > self._max_change, ch.c.change_seq <= top_change)
            ))).all() if top_change > self._max_change else []
        if new:
            self._tail_rows.extend(self._encode(row) for row in new)
            self._tail = self._segment(self._tail_rows)
        for seq, key, person, counted in changed:
            self._update(int(seq), key, person, bool(counted))
        self._max_seq, self._max_change = max(self._max_seq, top_seq), max(self._max_change, top_change)
        if len(self._tail_rows) > max(MERGE_AT, len(self._base) // 10):
            self._merge()

    def _encode(self, row: Any) -> tuple[int, ...]:
        seq, kind, key, town, day, person, amount, positions, counted = row
        return (self.kinds.of(kind), self.keys.of(key), self.towns.of(town), date.fromisoformat(day).toordinal(),
                self.persons.of(person), int(amount), int(positions), 1 if counted else 0, int(seq))

    @staticmethod
    def _segment(rows: list[tuple[int, ...]]) -> _Segment:
        if not rows:
            return _Segment.empty()
        matrix = np.array(rows, dtype=np.int64)
        return _Segment({c: matrix[:, i].astype(_DTYPES[c]) for i, c in enumerate(COLUMNS)})

    def _merge(self) -> None:
        merged = {c: np.concatenate([self._base.columns[c], self._tail.columns[c]]) for c in COLUMNS}
        order = np.lexsort((merged["date"], merged["kind"]))
        self._base = _Segment({c: merged[c][order] for c in COLUMNS})
        self._tail_rows, self._tail = [], _Segment.empty()
        kinds = self._base.columns["kind"]
        self._kind_bounds = {}
        for code in np.unique(kinds):
            lo, hi = np.searchsorted(kinds, code, "left"), np.searchsorted(kinds, code, "right")
            self._kind_bounds[int(code)] = (int(lo), int(hi))
        self._by_seq = np.argsort(self._base.columns["seq"], kind="stable")

    def _update(self, seq: int, key: str, person: str, counted: bool) -> None:
        where = self._find(seq)
        if where is None:
            return
        segment, i = where
        segment.columns["key"][i] = self.keys.of(key)
        segment.columns["person"][i] = self.persons.of(person)
        segment.columns["counted"][i] = counted
        if segment is self._tail:
            row = list(self._tail_rows[i])
            row[1], row[4], row[7] = self.keys.of(key), self.persons.of(person), 1 if counted else 0
            self._tail_rows[i] = tuple(row)

    def _find(self, seq: int) -> tuple[_Segment, int] | None:
        seqs = self._base.columns["seq"]
        if len(seqs):
            k = int(np.searchsorted(seqs[self._by_seq], seq))
            if k < len(seqs) and seqs[self._by_seq[k]] == seq:
                return self._base, int(self._by_seq[k])
        tail = self._tail.columns["seq"]
        hits = np.nonzero(tail == seq)[0]
        return (self._tail, int(hits[0])) if len(hits) else None

    # ---- queries -------------------------------------------------------------------------------
    def _selected(self, kind: str, key: str | None, date_from: date | None, date_to: date | None,
                  town: str | None) -> list[tuple[_Segment, IntArray | slice, IntArray]]:
        """Per segment: the rows of the kind in the date range, and the mask of those that count."""
        code = self.kinds.code.get(kind)
        if code is None or (key is not None and key not in self.keys.code) or \
                (town is not None and town not in self.towns.code):
            return []
        lo_day = date_from.toordinal() if date_from is not None else None
        hi_day = date_to.toordinal() if date_to is not None else None
        out: list[tuple[_Segment, IntArray | slice, IntArray]] = []
        base = self._base.columns
        if code in self._kind_bounds:
            lo, hi = self._kind_bounds[code]
            days = base["date"][lo:hi]
            start = lo + (int(np.searchsorted(days, lo_day, "left")) if lo_day is not None else 0)
            stop = lo + (int(np.searchsorted(days, hi_day, "right")) if hi_day is not None else hi - lo)
            rows: IntArray | slice = slice(start, stop)
            mask = base["counted"][rows].copy()
            self._filter(mask, base, rows, key, town)
            out.append((self._base, rows, mask))
        if len(self._tail):
            tail = self._tail.columns
            mask = tail["counted"] & (tail["kind"] == code)
            if lo_day is not None:
                mask &= tail["date"] >= lo_day
            if hi_day is not None:
                mask &= tail["date"] <= hi_day
            self._filter(mask, tail, slice(None), key, town)
            out.append((self._tail, slice(None), mask))
        return out

    def _filter(self, mask: IntArray, cols: dict[str, IntArray], rows: IntArray | slice, key: str | None,
                town: str | None) -> None:
        if key is not None:
            mask &= cols["key"][rows] == self.keys.code[key]
        if town is not None:
            mask &= cols["town"][rows] == self.towns.code[town]

    def counts(self, kind: str, key: str | None = None, date_from: date | None = None, date_to: date | None = None,
               town: str | None = None) -> dict[str, int]:
        check_kind(kind)
        with self._lock:
            self.refresh()
            events = amount = positions = 0
            seen = np.zeros(len(self.persons.text), dtype=np.bool_)
            for segment, rows, mask in self._selected(kind, key, date_from, date_to, town):
                cols = segment.columns
                events += int(np.count_nonzero(mask))
                amount += int(cols["amount"][rows][mask].sum())
                positions += int(cols["positions"][rows][mask].sum())
                seen[cols["person"][rows][mask]] = True
            seen[0] = False  # "" - job postings have no person
            return {"events": events, "persons": int(np.count_nonzero(seen)), "amount_fen": amount,
                    "positions": positions}

    def grouped_counts(self, kind: str, group_by: list[str], key: str | None = None, date_from: date | None = None,
                       date_to: date | None = None, town: str | None = None) -> list[dict[str, Any]]:
        cols = check_group_by(group_by)
        check_kind(kind)
        with self._lock:
            self.refresh()
            parts = [(seg.columns, rows, mask) for seg, rows, mask in self._selected(kind, key, date_from, date_to, town)]
            if not parts:
                return []
            picked = {c: np.concatenate([cs[c][rows][mask] for cs, rows, mask in parts])
                      for c in ("key", "town", "date", "person", "amount", "positions")}
        if not len(picked["date"]):
            return []
        labels = {"key": picked["key"], "town": picked["town"], "date": picked["date"],
                  "month": _months(picked["date"])}
        if cols:
            stacked = np.stack([labels[c] for c in cols], axis=1)
            groups, inverse = np.unique(stacked, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
        else:
            groups, inverse = np.zeros((1, 0), dtype=np.int64), np.zeros(len(picked["date"]), dtype=np.int64)
        n = len(groups)
        events = np.bincount(inverse, minlength=n)
        amount = np.bincount(inverse, weights=picked["amount"], minlength=n)
        positions = np.bincount(inverse, weights=picked["positions"], minlength=n)
        with_person = picked["person"] != 0
        pairs = np.unique(inverse[with_person].astype(np.int64) * (len(self.persons.text) + 1)
                          + picked["person"][with_person])
        persons = np.bincount(pairs // (len(self.persons.text) + 1), minlength=n)
        out = []
        for g in range(n):
            item: dict[str, Any] = {c: self._label(c, int(groups[g][i])) for i, c in enumerate(cols)}
            item.update(events=int(events[g]), persons=int(persons[g]), amount_fen=int(amount[g]),
                        positions=int(positions[g]))
            out.append(item)
        out.sort(key=lambda r: tuple(r[c] for c in cols))
        return out

    def _label(self, column: str, value: int) -> str:
        if column == "key":
            return self.keys.text[value]
        if column == "town":
            return self.towns.text[value]
        if column == "date":
            return date.fromordinal(value).isoformat()
        return f"{value // 12:04d}-{value % 12 + 1:02d}"  # month


def _months(days: IntArray) -> IntArray:
    """Day ordinals → ``year * 12 + month - 1`` (through the few distinct days there are)."""
    unique, inverse = np.unique(days, return_inverse=True)
    months = np.array([(d.year * 12 + d.month - 1) for d in map(date.fromordinal, unique.tolist())], dtype=np.int64)
    return months[inverse.reshape(-1)]
