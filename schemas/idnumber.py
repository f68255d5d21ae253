"""National ID numbers (GB 11643-1999): format/checksum checks, the stray-ID scan and masking.

Lives in ``schemas`` (stdlib only) so validation, producers, the API's audit and redaction share
one definition.  Nothing here ever puts an ID number into an error message.

People write ID numbers the way they read them: in groups (``110101 19900307 1233``,
``110101 1990 03 07 1233``, in pairs...), with dashes, in full-width digits from a Chinese input
method (``１１０１０１…``).  Every check here sees them as Unicode NFKC would (any character whose
NFKC form is an ASCII digit counts as that digit, and likewise for ``X``), with up to
:data:`MAX_SEPARATOR` blanks, dashes or invisible characters between two digits.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from operator import mul

from schemas.text import has_astral

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_FORMAT = re.compile(r"[0-9]{17}[0-9X]")
MASK = "[ID-REDACTED]"

#: Every character whose NFKC form is one ASCII digit: 0-9, full-width, super/subscript, circled,
#: mathematical and segmented digits (a unit test re-derives this from unicodedata).
BMP_DIGIT_CHARS = "0-9\u00b2\u00b3\u00b9\u2070\u2074-\u2079\u2080-\u2089\u2460-\u2468\u24ea\uff10-\uff19"
DIGIT_CHARS = BMP_DIGIT_CHARS + "\U0001d7ce-\U0001d7ff\U0001fbf0-\U0001fbf9"
#: Every character whose NFKC form is ``X`` or ``x``.
BMP_X_CHARS = "Xx\u02e3\u2093\u2169\u2179\u24cd\u24e7\uff38\uff58"
X_CHARS = (BMP_X_CHARS + "\U0001d417\U0001d431\U0001d44b\U0001d465"
           "\U0001d47f\U0001d499\U0001d4b3\U0001d4cd\U0001d4e7\U0001d501\U0001d51b\U0001d535\U0001d54f"
           "\U0001d569\U0001d583\U0001d59d\U0001d5b7\U0001d5d1\U0001d5eb\U0001d605\U0001d61f\U0001d639"
           "\U0001d653\U0001d66d\U0001d687\U0001d6a1\U0001f147")
#: What people put between digit groups: blanks (incl. the ideographic space), hyphens and dashes,
#: and invisible characters that come with pasted text.
SEPARATOR_CHARS = ("\\s\\-\u00ad\u2010-\u2015\u2212\ufe58\ufe63\uff0d\u200b-\u200f\u2060-\u2064\ufeff")
MAX_SEPARATOR = 3  # separator characters allowed between two digits of one ID number
#: The usual splits of an ID number written in groups (digits before each separator): region /
#: birth date / sequence (6-8-4, 6-12, 14-4), with the date split (6-4-4-4) and the region too
#: (3-3-4-4-4), or in fours (4-4-4-4-2).  Any other split counts for a number that starts with a
#: province code and has no digit after the 18th (:func:`_written_as_one`).
GROUPINGS: frozenset[frozenset[int]] = frozenset(map(frozenset, (
    (), (6,), (14,), (6, 14), (6, 10, 14), (3, 6, 10, 14), (4, 8, 12, 16),
)))
#: The first two digits of a region code (GB/T 2260 provinces; 81-83: Hong Kong, Macao and Taiwan
#: residents' residence permits).
PROVINCES = frozenset("11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
                      "61 62 63 64 65 71 81 82 83".split())

_SEPARATOR = re.compile(f"[{SEPARATOR_CHARS}]+")
# A stretch of at least 17 digits and separators, maybe followed by an X: the cheap first pass
# (as fast as a plain digit-run search); the exact candidates are worked out inside it.
# A character class with astral ranges makes every search several times slower, so text without
# astral characters (almost all) is searched with the Basic Multilingual Plane digits only.
_CLUSTER = re.compile(f"[{DIGIT_CHARS}][{DIGIT_CHARS}{SEPARATOR_CHARS}]{{16,}}(?:[{SEPARATOR_CHARS}]{{0,{MAX_SEPARATOR}}}"
                      f"[{X_CHARS}])?")
_BMP_CLUSTER = re.compile(f"[{BMP_DIGIT_CHARS}][{BMP_DIGIT_CHARS}{SEPARATOR_CHARS}]{{16,}}"
                          f"(?:[{SEPARATOR_CHARS}]{{0,{MAX_SEPARATOR}}}[{BMP_X_CHARS}])?")
_TOKEN = re.compile(f"([{DIGIT_CHARS}]+)|([{SEPARATOR_CHARS}]+)|([{X_CHARS}])")
_DIGIT = re.compile(f"[{DIGIT_CHARS}]")
_TRAILING_SEPARATOR = re.compile(f"[{SEPARATOR_CHARS}]+$")


def _ascii(chars: str) -> str:
    return unicodedata.normalize("NFKC", chars).upper()


def normalise_id_number(raw: str) -> str:
    """The form that is checked and hashed: NFKC (full-width digits and X), without blanks, dashes
    or invisible characters, a trailing ``x`` upper-cased.  ``１１０１０１ 1990-0307-123３`` and
    ``110101199003071233`` are the same person."""
    return _SEPARATOR.sub("", unicodedata.normalize("NFKC", raw)).upper()


_ZEROS = ord("0") * sum(_WEIGHTS)


def checksum_char(first17: str) -> str:
    if len(first17) == 17 and first17.isascii() and first17.isdigit():
        # the usual case (ID numbers at ingest), 3x faster than an int() per digit: byte values less "0"
        return _CHECK_CHARS[(sum(map(mul, first17.encode(), _WEIGHTS)) - _ZEROS) % 11]
    return _CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def id_number_problem(value: str) -> str | None:
    """Why ``value`` (normalised) is not a valid ID number, or None.  Never quotes the value."""
    if len(value) != 18:
        return f"must be an 18-character national ID number (got {len(value)} characters)"
    if not _FORMAT.fullmatch(value):
        return "must be 17 digits followed by a digit or X"
    if checksum_char(value[:17]) != value[17]:
        return "is not a valid national ID number (GB 11643 check digit does not match)"
    return None


def is_valid_id_number(value: str) -> bool:
    return id_number_problem(normalise_id_number(value)) is None


def _plausible(candidate: str) -> bool:
    """Valid check digit, a real region prefix and a real birth date: cuts false positives on
    long numeric identifiers (event ids, order numbers) to a tiny fraction."""
    candidate = candidate.upper()
    if candidate[0] not in "12345678" or checksum_char(candidate[:17]) != candidate[17]:
        return False
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return False
    return 1880 <= born.year <= date.today().year


def _candidates(cluster: str) -> list[str]:
    """The 18-character candidates of a stretch of digits and separators, normalised.

    A candidate starts where a run of digits starts (no digit right before it: the digits of a
    longer number are not an ID number) and takes the next 17 digits and a digit or X, split by
    separators of at most MAX_SEPARATOR characters each the way :func:`_written_as_one` allows;
    the check digit and birth date (:func:`_plausible`) then keep dates, amounts and phones out."""
    tokens = [(m.lastindex or 0, m.group()) for m in _TOKEN.finditer(cluster)]
    found = []
    for start, (kind, _) in enumerate(tokens):
        if kind == 1:
            digits, splits = _read_from(tokens, start)
            if _written_as_one(digits, splits):
                found.append(_ascii(digits[:18]))
    return found


def _read_from(tokens: list[tuple[int, str]], start: int) -> tuple[str, set[int]]:
    """The first 18 or more digits (or 17 and an X) from ``tokens[start]`` up to a gap wider than
    a separator, and where separators split them (digits before each)."""
    digits, splits = "", set()
    for kind, text in tokens[start:]:
        if kind == 2:
            if len(text) > MAX_SEPARATOR:
                break
            splits.add(len(digits))
            continue
        if kind == 3:
            if len(digits) == 17:
                digits += "X"
                splits.discard(17)  # "... 002 X": still a usual split
            break
        digits += text
        if len(digits) >= 18:
            break
    return digits, splits


def _written_as_one(digits: str, splits: set[int]) -> bool:
    """Whether the digits read can be one ID number as people write it: a usual split
    (:data:`GROUPINGS`), maybe running on into a longer number (a certificate number), or any other
    split into exactly 18 characters in whole groups (``330283 1985 06 15 0028``, pairs, 6-6-6)
    that starts with a province code: a list of periods (``2024-01 2024-02 2024-03``) starts with
    a year, and the first digits of a longer group (a phone number after a date) end nothing."""
    if len(digits) < 18:
        return False
    if splits in GROUPINGS:
        return True
    return len(digits) == 18 and _ascii(digits[:2]) in PROVINCES


def contains_id_number(text: str, *, astral: bool | None = None) -> bool:
    """True when ``text`` holds something that really looks like a national ID number, however
    it was written (see the module docstring).  ``astral``: whether ``text`` has characters
    beyond U+FFFF, when the caller already knows (:func:`schemas.text.has_astral`)."""
    if len(text) < 18:
        return False
    if astral is None:
        astral = has_astral(text)
    for cluster in (_CLUSTER if astral else _BMP_CLUSTER).finditer(text):
        if any(_plausible(candidate) for candidate in _candidates(cluster.group())):
            return True
    return False


def mask_ids(text: str) -> str:
    """Replace every run of 17 or more digits (an ID or certificate number, grouped, full-width or
    inside a longer number; separators and a trailing X included) by a mask.  Deliberately loose
    (no check digit): over-masking a log line is harmless.  Not masked: a digit run inside an
    identifier the platform mints itself (:func:`is_minted_token`) - a pseudonymous person_id with
    a long run of digits is still the person's only handle in the audit log."""
    if len(text) < 18:
        return text
    return (_CLUSTER if has_astral(text) else _BMP_CLUSTER).sub(_mask_cluster, text)


def _mask_cluster(match: re.Match[str]) -> str:
    text = match.group()
    if len(_DIGIT.findall(text)) < 17:
        return text
    body = _TRAILING_SEPARATOR.sub("", text)
    if body.isascii() and body.isdigit() and _inside_minted_token(match.string, match.start(), match.start() + len(body)):
        return text
    return MASK + text[len(body):]  # the blank after a number is not part of it


#: Identifiers the platform mints: pseudonymous person_ids (``p`` + 32 hex), trace ids (32 hex),
#: digests (up to 64 hex).  Their digit runs are chance: about 1 person_id in 400 holds 17 digits in a row.
_MINTED = re.compile(r"p?[0-9a-f]{32,64}")
_HEX = frozenset("0123456789abcdef")


def is_minted_token(token: str) -> bool:
    """Whether ``token`` is an identifier the platform minted (lower-case hex of 32-64 characters
    with at least one letter, maybe after ``p``) that does not hold a plausible ID number.  An ID
    number smuggled into such a token (valid check digit and birth date) is still an ID number."""
    return (_MINTED.fullmatch(token) is not None and not token.lstrip("p").isdigit()
            and not contains_id_number(token))


def _inside_minted_token(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` (ASCII digits) lies inside a minted token standing on its own
    (no letter or digit right outside it: ``P123...`` or ``ID123...`` is not one)."""
    while start and text[start - 1] in _HEX:
        start -= 1
    if start and text[start - 1] == "p":
        start -= 1
    while end < len(text) and text[end] in _HEX:
        end += 1
    if (start and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
        return False
    return is_minted_token(text[start:end])
