from __future__ import annotations

from schemas.idnumber import (
    MASK,
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
