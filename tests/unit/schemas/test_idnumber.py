from __future__ import annotations

import re
import sys
import unicodedata
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.idnumber import (
    DIGIT_CHARS,
    MASK,
    PROVINCES,
    X_CHARS,
    _plausible,
    checksum_char,
    contains_id_number,
    id_number_problem,
    is_minted_token,
    is_valid_id_number,
    mask_ids,
    normalise_id_number,
)

VALID = ["110101199003071233", "11010519491231002X", "440306198512150022"]


def test_gb11643_check_digit() -> None:
    for number in VALID:
        assert checksum_char(number[:17]) == number[17]
        assert is_valid_id_number(number)
    assert is_valid_id_number(" 11010519491231002x ")
    assert not is_valid_id_number("110101199003071234")


WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
FULL_WIDTH = {ord("0") + i: 0xFF10 + i for i in range(10)}


@given(st.text("0123456789", min_size=17, max_size=17))
def test_check_digit_is_the_gb11643_sum(first17: str) -> None:
    expected = "10X98765432"[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]
    assert checksum_char(first17) == expected
    assert checksum_char(first17.translate(FULL_WIDTH)) == expected  # not the ASCII shortcut: same answer


def test_problems_never_quote_the_number() -> None:
    for bad in ("110101199003071234", "12345", "11010119900307123A", "1101011990030712330"):
        problem = id_number_problem(bad)
        assert problem and bad not in problem and bad[:6] not in problem


def test_contains_id_number_is_strict_but_masking_is_loose() -> None:
    assert contains_id_number(f"call about {VALID[0]} today")
    assert not contains_id_number("order 202403050000012345")  # not a plausible birth date
    assert mask_ids(f"a{VALID[1]}b {VALID[0]}01 c") == f"a{MASK}b {MASK} c"
    assert mask_ids("123456789012345678") == MASK  # loose: any 17 digits + digit/X


def test_identifiers_the_platform_mints_are_not_masked() -> None:
    # A pseudonym with 23 digits in a row (about one person in 400 has 17 or more): masking it cut the
    # person out of their own audit trail (CI, 2026-12-03: /api/audit?person_id=... found nothing).
    person = "pfd29354502044777700797654c4dba17"
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    for text in (person, f"person_id={person}", f"/api/persons/{person}/timeline", f'{{"trace":"{trace}"}}'):
        assert mask_ids(text) == text
    assert is_minted_token(person) and is_minted_token(trace) and is_minted_token("a" + "1" * 63)
    # still masked: a real-looking ID number in a token of that shape, all-digit tokens, tokens too
    # short or glued to other letters or digits, upper-case hex, separators inside the run
    assert mask_ids(f"p{VALID[0]}{'a' * 14}") == f"p{MASK}{'a' * 14}"
    assert not is_minted_token("1" * 32) and mask_ids("1" * 32) == MASK
    assert mask_ids(f"ab{'1' * 20}cd") == f"ab{MASK}cd"
    for glued in (f"Q{person}", f"7{person}", f"{person}Z", f"ID{person[1:]}"):
        assert MASK in mask_ids(glued), glued
    assert MASK in mask_ids(person.upper()) and MASK in mask_ids(person[:20])
    assert MASK in mask_ids("pfd2935450 2044777700797654c4dba17")


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


@given(st.lists(st.sampled_from([*VALID, VALID[1][:17] + "x", "0", "9", "X", "x", "年", "a"]),
                max_size=8).map("".join))
def test_contains_id_number_equals_a_look_behind_scan(text: str) -> None:
    """The definition, for text written without separators: an 18-character candidate starts
    wherever no digit precedes it."""
    reference = any(_plausible(m.group()) for m in re.finditer(r"(?<![0-9])[0-9]{17}[0-9Xx]", text))
    assert contains_id_number(text) == reference


# ---- issue 15.3: however the number is written ---------------------------------------------------
def _nfkc_chars(wanted: set[str]) -> set[str]:
    return {chr(c) for c in range(sys.maxunicode + 1)
            if not 0xD800 <= c <= 0xDFFF and unicodedata.normalize("NFKC", chr(c)) in wanted}


def _class_chars(spec: str) -> set[str]:
    return {chr(c) for c in range(sys.maxunicode + 1)
            if not 0xD800 <= c <= 0xDFFF and re.fullmatch(f"[{spec}]", chr(c))}


def test_digit_and_x_classes_are_exactly_what_nfkc_maps_to_a_digit_or_x() -> None:
    assert _class_chars(DIGIT_CHARS) == _nfkc_chars(set("0123456789"))
    assert set(X_CHARS) == _nfkc_chars({"X", "x"})


FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
WRITTEN = [
    "110101 19900307 1233",  # region / birth date / sequence
    "110101-19900307-1233",
    "110101 1990 0307 1233",
    "110 101 1990 0307 1233",
    "1101 0119 9003 0712 33",
    "110101 1990 03 07 1233",  # the birth date split year / month / day
    "110 101 1990 03 07 1233",
    "110101 199003 071233",  # in sixes
    "11 01 01 19 90 03 07 12 33",  # in pairs
    "1101-01199003071233",  # any other split by short separators
    "110101199003071233".translate(FULL_WIDTH),  # a Chinese input method's full-width digits
    "１１０１０１　１９９００３０７　１２３３",  # ... and its ideographic spaces
    "110101\u200b199003071233",  # a zero-width space pasted along
    "11010519491231002 x",
    "110105 19491231 002Ｘ",
]


@pytest.mark.parametrize("written", WRITTEN)
def test_an_id_number_written_in_groups_or_full_width_is_found_masked_and_normalised(written: str) -> None:
    written = written.encode().decode("unicode_escape") if "\\u" in written else written
    text = f"走访记录：身份证{written}，电话13812345678"
    assert contains_id_number(text), written
    masked = mask_ids(text)
    assert MASK in masked and not contains_id_number(masked)
    assert normalise_id_number(written) in {VALID[0], VALID[1]}
    assert is_valid_id_number(written)


def test_any_split_by_short_separators_is_one_id_number_when_it_checks_out() -> None:
    """Any split counts when the 18 digits pass the check digit and birth-date test (review
    2026-12-04: "330283 1985 06 15 0028" reached Kafka), but only 18 digits in whole groups: the
    start of a longer group, a wide gap or a wrong check digit is not an ID number."""
    assert contains_id_number("1101 01199003071233")
    assert contains_id_number("11010119900307123 3")  # the check digit on its own
    assert not contains_id_number("110101    199003071233")  # a gap wider than a separator
    assert not contains_id_number("110 101 1990 03 07 12334")  # the 18th digit inside a longer group
    assert not contains_id_number("110101 1990 03 07 1234")  # wrong check digit
    assert not contains_id_number("11 01 01 19 90 03 07 12 34")
    assert not contains_id_number("110101 1990 13 07 1237")  # valid check digit, but no 13th month
    assert not contains_id_number("16 01 01 19 90 03 07 12 32")  # valid check digit, but no province 16
    for joiner in (" ", "-"):  # periods: a year is no province
        assert not contains_id_number(joiner.join(f"{year}-{month:02d}" for year in (2023, 2024)
                                                  for month in range(1, 13)))


@st.composite
def valid_ids(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(sorted(PROVINCES))) + f"{draw(st.integers(0, 9999)):04d}"
    born = draw(st.dates(date(1900, 1, 1), date(2020, 12, 31)))
    serial = draw(st.integers(0, 999))
    first17 = f"{region}{born:%Y%m%d}{serial:03d}"
    return first17 + checksum_char(first17)


GROUPS = [(), (6, 14), (6, 10, 14), (3, 6, 10, 14), (4, 8, 12, 16), (6, 10, 12, 14), (6, 12), (2, 4, 6, 8, 10, 12, 14, 16)]


@settings(derandomize=True, max_examples=300)
@given(valid_ids(), st.one_of(st.sampled_from(GROUPS), st.sets(st.integers(1, 17)).map(sorted).map(tuple)), st.sampled_from([" ", "-", "\u3000", " - ", "\u2014"]),
       st.booleans(), st.sampled_from(["", "号码", "证件 ", "a", "：", "，"]), st.sampled_from(["", "。", " 电话", "b"]))
def test_every_valid_id_written_any_usual_way_is_found(number: str, groups: tuple[int, ...], sep: str,
                                                       full_width: bool, before: str, after: str) -> None:
    pieces, last = [], 0
    for cut in (*groups, 18):
        pieces.append(number[last:cut])
        last = cut
    written = sep.join(pieces)
    if full_width:
        written = written.translate(FULL_WIDTH)
    text = before + written + after
    assert contains_id_number(text), text
    assert not contains_id_number(mask_ids(text))
    assert normalise_id_number(written) == number


ordinary = st.one_of(
    st.dates(date(1950, 1, 1), date(2030, 12, 31)).flatmap(lambda d: st.sampled_from([
        f"{d:%Y-%m-%d}", f"{d.year}/{d.month}/{d.day}", f"{d.year}年{d.month}月{d.day}日", f"{d:%Y.%m.%d}",
        f"{d:%Y-%m-%d}T10:12:00+08:00", f"{d:%Y-%m-%d} 09:30", f"{d:%Y-%m}"])),
    st.integers(0, 10**7).map(lambda n: f"{n / 100:,.2f}"),  # amounts in yuan
    st.integers(1, 99999).map(lambda n: f"{n}元"),
    st.integers(13 * 10**9, 19 * 10**9 + 999999999).flatmap(lambda n: st.sampled_from([
        f"{n}", f"{str(n)[:3]} {str(n)[3:7]} {str(n)[7:]}", f"{str(n)[:3]}-{str(n)[3:7]}-{str(n)[7:]}"])),  # mobiles
    st.integers(0, 999),  # counts
    st.integers(1, 9999).map(lambda n: f"pay-2024-03-{n:04d}"),  # event ids
).map(str)


@settings(derandomize=True, max_examples=500)
@given(st.lists(ordinary, min_size=1, max_size=8),
       st.lists(st.sampled_from([" ", "，", "、", "; ", " 金额 ", "-", "\n", "  "]), min_size=8, max_size=8))
def test_ordinary_numbers_side_by_side_are_not_an_id_number(values: list[str], joiners: list[str]) -> None:
    """Dates, times, amounts, mobile numbers, counts and ids, in any order with blanks, dashes or
    words between them: never read as an ID number (false positives refuse real records)."""
    text = "".join(v + j for v, j in zip(values, joiners, strict=False))
    assert not contains_id_number(text), text
