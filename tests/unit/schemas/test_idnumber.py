from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from schemas.idnumber import (
    MASK,
    _plausible,
    checksum_char,
    contains_id_number,
    id_number_problem,
    is_valid_id_number,
    mask_ids,
)

VALID = ["110101199003071233", "11010519491231002X", "440306198512150022"]


def test_gb11643_check_digit() -> None:
    for number in VALID:
        assert checksum_char(number[:17]) == number[17]
        assert is_valid_id_number(number)
    assert is_valid_id_number(" 11010519491231002x ")
    assert not is_valid_id_number("110101199003071234")


def test_problems_never_quote_the_number() -> None:
    for bad in ("110101199003071234", "12345", "11010119900307123A", "1101011990030712330"):
        problem = id_number_problem(bad)
        assert problem and bad not in problem and bad[:6] not in problem


def test_contains_id_number_is_strict_but_masking_is_loose() -> None:
    assert contains_id_number(f"call about {VALID[0]} today")
    assert not contains_id_number("order 202403050000012345")  # not a plausible birth date
    assert mask_ids(f"a{VALID[1]}b {VALID[0]}01 c") == f"a{MASK}b {MASK} c"
    assert mask_ids("123456789012345678") == MASK  # loose: any 17 digits + digit/X


def test_an_id_number_is_found_where_a_digit_run_starts() -> None:
    embedded = [
        f"{VALID[0]}99",  # certificate number: ID number + 2 digits
        f"x{VALID[1]}7",  # X-terminated, more text after it
        f"{VALID[1][:17]}x",  # lower-case x
        f"a-{VALID[2]}-b",
    ]
    for text in embedded:
        assert contains_id_number(text), text
    # the same digits not at the start of a run are not an ID number
    assert not contains_id_number(f"7{VALID[0]}")
    assert not contains_id_number(f"1234{VALID[2]}")
    assert not contains_id_number(VALID[0][:17])


@given(st.lists(st.sampled_from([*VALID, VALID[1][:17] + "x", "0", "9", "X", "x", " ", "-", "年"]),
                max_size=8).map("".join))
def test_contains_id_number_equals_a_look_behind_scan(text: str) -> None:
    """The definition: an 18-character candidate starts wherever no digit precedes it."""
    reference = any(_plausible(m.group()) for m in re.finditer(r"(?<![0-9])[0-9]{17}[0-9Xx]", text))
    assert contains_id_number(text) == reference
