"""Small-cell protection of a table of counts: primary and complementary suppression, audited.

A *table* holds every cell a caller without exact access can obtain: town (or ``*``, the whole
district) x key (or ``*``, every key) x period (a month, quarter, half-year, year, or ``*``, all
time), and the *equations* that tie them: a parent cell is the sum of its children along one
dimension (the district is the sum of its towns, a key total the sum of the keys, a quarter the sum
of its months ...).  Events, amounts and positions add up exactly along every equation; that is
what a differencing attack uses ("the district total minus the towns I can see").

:func:`protect` returns the cells to suppress:

1. *primary*: cells with ``0 < persons < threshold``;
2. *complementary*: cells suppressed so that no primary or complementary cell can be computed
   exactly from the published ones.  The check is exact linear algebra: a suppressed cell is
   *determined* when its unit vector lies in the row space of the equations restricted to the
   suppressed cells (reduced row echelon form over the integers modulo a 61-bit prime).  Each
   determined cell gets one more suppression in one of its equations (the unsuppressed cell with
   the fewest events, non-empty cells first), and the audit runs again until nothing is determined;
3. the audit is repeated for every *view*: a set of towns whose cells some caller sees exactly
   (a caseworker token sees its own towns), so that knowing one's own towns does not unlock a
   neighbour's small cell either.

Everything here is deterministic (sorted tie-breaks): the same table gives the same suppressions.
The method and its limits are written down in docs/privacy.md ("Small cells").
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ALL = "*"
PRIME = (1 << 61) - 1
MEASURES = ("events", "persons", "amount_fen", "positions")

Cell = tuple[str, str, str]  # (town | "*", key | "*", period | "*")
Values = dict[str, int]


@dataclass
class Table:
    """Cells with their exact values, and the additive equations between them."""

    values: dict[Cell, Values]
    equations: list[tuple[Cell, tuple[Cell, ...]]] = field(default_factory=list)

    def value(self, cell: Cell) -> Values:
        return self.values.get(cell) or dict.fromkeys(MEASURES, 0)

    def equations_of(self) -> dict[Cell, list[int]]:
        index: dict[Cell, list[int]] = {}
        for n, (parent, children) in enumerate(self.equations):
            for cell in (parent, *children):
                index.setdefault(cell, []).append(n)
        return index


def primary(table: Table, threshold: int) -> set[Cell]:
    """Cells with fewer than ``threshold`` persons (but some)."""
    if threshold <= 1:
        return set()
    return {cell for cell, v in table.values.items() if 0 < (v.get("persons") or 0) < threshold}


def _known(cell: Cell, view: frozenset[str]) -> bool:
    return cell[0] != ALL and cell[0] in view


def determined(table: Table, suppressed: set[Cell], view: frozenset[str] = frozenset()) -> set[Cell]:
    """Suppressed cells (not known to ``view``) whose value follows from the published cells, the
    cells ``view`` knows, and the equations.

    Unknown ``s`` is fixed iff every solution of the homogeneous system (equations restricted to
    the unknowns) has ``x_s = 0``.  One random solution (free unknowns drawn at random modulo a
    61-bit prime, the rest by back substitution on a row echelon form) is non-zero at every unknown
    that is not fixed, except with probability 2^-61 per unknown; two draws make a miss (which
    would only hide one cell too many, never show one) vanishingly rare."""
    unknown = sorted(c for c in suppressed if not _known(c, view))
    col = {cell: n for n, cell in enumerate(unknown)}
    echelon = _Echelon()
    for parent, children in table.equations:
        row: dict[int, int] = {}
        for cell, coef in ((parent, 1), *((c, -1) for c in children)):
            j = col.get(cell)
            if j is not None:
                row[j] = (row.get(j, 0) + coef) % PRIME
        row = {j: v for j, v in row.items() if v}
        if row:
            echelon.insert(row)
    rng = random.Random(len(unknown))  # deterministic: the same table gives the same answer
    zero = set(range(len(unknown)))
    for _ in range(2):
        x = echelon.solution(len(unknown), rng)
        zero = {j for j in zero if x[j] == 0}
    return {unknown[j] for j in zero}


class _Echelon:
    """A row echelon basis over the integers modulo ``PRIME``: each row's pivot is its smallest
    column, rows hold only columns after their pivot, and pivots are distinct."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[int, int]] = {}

    def insert(self, row: dict[int, int]) -> None:
        pending = [j for j in row if j in self.rows]
        heapq.heapify(pending)
        while pending:
            j = heapq.heappop(pending)
            factor = row.get(j, 0)
            if not factor:
                continue
            for k, v in self.rows[j].items():
                before = row.get(k, 0)
                after = (before - factor * v) % PRIME
                if after:
                    row[k] = after
                    if not before and k in self.rows:
                        heapq.heappush(pending, k)
                else:
                    row.pop(k, None)
        if not row:
            return
        pivot = min(row)
        inverse = pow(row[pivot], PRIME - 2, PRIME)
        self.rows[pivot] = {j: v * inverse % PRIME for j, v in row.items()}

    def solution(self, n: int, rng: random.Random) -> list[int]:
        """A random solution of the homogeneous system: free unknowns random, pivots solved."""
        x = [0 if j in self.rows else rng.randrange(1, PRIME) for j in range(n)]
        for pivot in sorted(self.rows, reverse=True):
            x[pivot] = -sum(v * x[k] for k, v in self.rows[pivot].items() if k != pivot) % PRIME
        return x


def _cost(table: Table, cell: Cell) -> tuple[int, int, int, int, Cell]:
    v = table.value(cell)
    empty = int(not any(v.get(m) for m in MEASURES))
    return (empty, v.get("events") or 0, v.get("persons") or 0, v.get("amount_fen") or 0, cell)


def _exposed(table: Table, cell: Cell, hidden: set[Cell], index: Mapping[Cell, list[int]]) -> int:
    """How many equations of ``cell`` hold no hidden cell yet: hiding ``cell`` makes it the only
    unknown there, so each needs a complement of its own."""
    count = 0
    for n in index.get(cell, ()):
        parent, children = table.equations[n]
        if not any(c in hidden for c in (parent, *children) if c != cell):
            count += 1
    return count


def _pick(table: Table, candidates: Iterable[Cell], hidden: set[Cell], index: Mapping[Cell, list[int]]) -> Cell | None:
    """The complement that opens the fewest new leaks; then non-empty, fewest events."""
    return min(candidates, default=None, key=lambda c: (_cost(table, c)[0], _exposed(table, c, hidden, index),
                                                        *_cost(table, c)[1:]))


def _close_singletons(table: Table, suppressed: set[Cell], view: frozenset[str],
                      index: Mapping[Cell, list[int]]) -> None:
    """Until no equation holds exactly one hidden cell (the plain "total minus the rest" leak): give
    each such equation a second hidden cell.  No linear algebra: every one of these is needed."""
    hidden = {c for c in suppressed if not _known(c, view)}
    pending = sorted({n for c in hidden for n in index.get(c, ())})
    while pending:
        n = pending.pop()
        parent, children = table.equations[n]
        members = (parent, *children)
        inside = [c for c in members if c in hidden]
        if len(inside) != 1:
            continue
        extra = _pick(table, (c for c in members if c not in suppressed and not _known(c, view)), hidden, index)
        if extra is None:
            continue
        suppressed.add(extra)
        hidden.add(extra)
        pending.extend(sorted(index.get(extra, ())))


def protect(table: Table, threshold: int, views: Iterable[frozenset[str]] = ()) -> set[Cell]:
    """Primary plus complementary suppressions such that, for the public view and every view in
    ``views``, no suppressed cell is determined by what that view can obtain.

    Per view: close every equation left with a single hidden cell (cheap, always needed), then
    audit; a cell still determined (by a longer chain of equations) gets one more complement among
    its neighbours, and the two steps repeat until the audit finds nothing for any view."""
    suppressed = primary(table, threshold)
    if not suppressed:
        return suppressed
    all_views = [frozenset()] + sorted({frozenset(v) for v in views if v}, key=sorted)
    index = table.equations_of()
    stuck: set[tuple[Cell, frozenset[str]]] = set()
    while True:
        for view in all_views:
            _close_singletons(table, suppressed, view, index)
            open_cells = sorted((c for c in determined(table, suppressed, view) if (c, view) not in stuck),
                                key=lambda c: _cost(table, c))
            if not open_cells:
                continue
            added: set[Cell] = set()
            for cell in open_cells:  # one complement per determined cell, unless one was just added nearby
                around = {c for n in index.get(cell, ()) for c in (table.equations[n][0], *table.equations[n][1])}
                if around & added:
                    continue
                extra = _neighbour(table, cell, around, suppressed, view, index)
                if extra is None:
                    stuck.add((cell, view))
                else:
                    suppressed.add(extra)
                    added.add(extra)
            if added:
                break
        else:
            return suppressed


def _neighbour(table: Table, cell: Cell, around: set[Cell], suppressed: set[Cell], view: frozenset[str],
               index: Mapping[Cell, list[int]]) -> Cell | None:
    """A complement for a cell determined through a chain of equations: among its neighbours, or
    (when they are all hidden) one equation further."""
    hidden = {c for c in suppressed if not _known(c, view)}
    extra = _pick(table, (c for c in around if c not in suppressed and not _known(c, view)), hidden, index)
    if extra is None:
        further = {c for nb in around for n in index.get(nb, ()) for c in (table.equations[n][0], *table.equations[n][1])}
        extra = _pick(table, (c for c in further if c not in suppressed and not _known(c, view)), hidden, index)
    return extra


__all__ = ["ALL", "MEASURES", "Cell", "Table", "determined", "primary", "protect"]
