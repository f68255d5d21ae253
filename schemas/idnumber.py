"""National ID numbers (GB 11643-1999): format/checksum checks and masking.

Lives in ``schemas`` (stdlib only) so validation, producers and redaction share one definition.
Nothing here ever puts an ID number into an error message.
"""

from __future__ import annotations

import re
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_FORMAT = re.compile(r"[0-9]{17}[0-9X]")
# Anything that looks like an ID (17 digits + digit/X), optionally followed by the 2 digits of a
# disability-certificate number.  Deliberately loose: over-masking a log line is harmless.
ID_LIKE = re.compile(r"[0-9]{17}[0-9Xx](?:[0-9]{2})?")
# Runs of 17+ digits (and a trailing X) for the stricter "is there really an ID number in this
# text" scan: a candidate is the first 18 characters of such a run.  (Scanning whole runs is
# about twice as fast as a look-behind at every position, and finds the same candidates.)
_DIGIT_RUN = re.compile(r"[0-9]{17,}[Xx]?")
MASK = "[ID-REDACTED]"


def normalise_id_number(raw: str) -> str:
    """Strip blanks and upper-case a trailing ``x``: the form that is hashed."""
    return raw.strip().upper()


def checksum_char(first17: str) -> str:
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


def contains_id_number(text: str) -> bool:
    """True when ``text`` holds something that really looks like a national ID number."""
    if len(text) < 18:
        return False
    for run in _DIGIT_RUN.finditer(text):
        candidate = run.group()
        if len(candidate) >= 18 and _plausible(candidate[:18]):
            return True
    return False


def mask_ids(text: str) -> str:
    """Replace every ID-like (or certificate-number-like) run of characters by a mask."""
    if len(text) < 18:
        return text
    return ID_LIKE.sub(MASK, text)
