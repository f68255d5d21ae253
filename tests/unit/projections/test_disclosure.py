"""Primary and complementary suppression of a table of counts (projections/disclosure.py)."""

from __future__ import annotations

from projections.disclosure import ALL, Cell, Table, determined, primary, protect


def value(events: int, persons: int | None = None) -> dict[str, int]:
    return {"events": events, "persons": events if persons is None else persons, "amount_fen": 100 * events,
            "positions": 0}


def grid(cells: dict[tuple[str, str], int]) -> Table:
    """A two-way table (rows = towns, columns = keys, one period) with its margins and equations."""
    rows = sorted({r for r, _ in cells})
    cols = sorted({c for _, c in cells})
    values: dict[Cell, dict[str, int]] = {(r, c, "p"): value(v) for (r, c), v in cells.items()}
    for r in rows:
        values[(r, ALL, "p")] = value(sum(cells.get((r, c), 0) for c in cols))
    for c in cols:
        values[(ALL, c, "p")] = value(sum(cells.get((r, c), 0) for r in rows))
    values[(ALL, ALL, "p")] = value(sum(cells.values()))
    equations = [((r, ALL, "p"), tuple((r, c, "p") for c in cols)) for r in [*rows, ALL]]
    equations += [((ALL, c, "p"), tuple((r, c, "p") for r in rows)) for c in [*cols, ALL]]
    return Table(values, equations)


def test_a_lone_small_cell_is_determined_by_its_row_total() -> None:
    table = grid({("A", "x"): 3, ("A", "y"): 10, ("B", "x"): 10, ("B", "y"): 10})
    assert primary(table, 5) == {("A", "x", "p")}
    assert determined(table, {("A", "x", "p")}) == {("A", "x", "p")}


def test_four_corners_protect_each_other() -> None:
    table = grid({("A", "x"): 3, ("A", "y"): 10, ("B", "x"): 10, ("B", "y"): 3})
    corners = {("A", "x", "p"), ("A", "y", "p"), ("B", "x", "p"), ("B", "y", "p")}
    assert determined(table, corners) == set()
    assert protect(table, 5) == corners  # the cheapest safe pattern, margins stay published


def test_a_bridge_between_two_safe_cycles_is_found() -> None:
    """Every row and column holds two hidden cells, yet the bridge cell is the only link between two
    cycles: rows and columns sums give it exactly.  Counting hidden cells per equation misses it;
    the linear algebra does not."""
    cells = {(r, c): 10 for r in "1234" for c in "abcd"}
    table = grid(cells)
    cycle_1 = {("1", "a"), ("1", "b"), ("2", "a"), ("2", "b")}
    cycle_2 = {("3", "c"), ("3", "d"), ("4", "c"), ("4", "d")}
    bridge = {("2", "c")}
    hidden = {(r, c, "p") for r, c in cycle_1 | cycle_2 | bridge}
    for parent, children in table.equations:
        assert len([c for c in (parent, *children) if c in hidden]) != 1
    assert determined(table, hidden) == {("2", "c", "p")}


def test_what_a_caseworker_knows_is_taken_into_account() -> None:
    """Town A's caseworker sees A exactly: hiding A's cell as B's complement protects B from the
    public, not from them; protect() looks for another complement."""
    table = grid({("A", "x"): 10, ("A", "y"): 10, ("B", "x"): 2, ("B", "y"): 10, ("C", "x"): 10, ("C", "y"): 10})
    public = protect(table, 5)
    assert ("B", "x", "p") in public and determined(table, public) == set()
    with_a = protect(table, 5, [frozenset({"A"})])
    assert determined(table, with_a) == set()
    assert determined(table, with_a, frozenset({"A"})) == set()
    assert any(c[0] not in ("A", "B") for c in with_a)  # a third town shares the secret


def test_nothing_small_nothing_hidden() -> None:
    table = grid({("A", "x"): 5, ("A", "y"): 0, ("B", "x"): 7, ("B", "y"): 9})
    assert protect(table, 5) == set()
    assert protect(grid({("A", "x"): 1, ("B", "x"): 9}), 1) == set()  # threshold 1: suppression off
