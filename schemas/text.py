"""Text that comes from outside: lone surrogates, control and invisible characters, NFKC.

Python strings can hold what UTF-8 cannot: a JSON escape such as ``"\\ud800"`` decodes to a lone
UTF-16 surrogate, which no encoder will write (Kafka, the report file, an HTTP answer).  Such a
string is refused at the door and made printable (:func:`printable`) wherever rejected input is
kept.  Control characters (NUL, escape, line separators ...) have no place in a name or a key;
invisible format characters (zero-width space, joiners, bidi marks, BOM ...) make two names that
look the same compare different (``锦屏街道`` and ``锦屏街道\\u200b``).  Stdlib only: the validation
layer, the producers and the redaction share these definitions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: C0 and C1 control characters, DEL, and the Unicode line/paragraph separators
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: control characters a multi-line free text (a reason, a note) may keep
MULTILINE_OK = frozenset("\t\n\r")
#: default-ignorable characters that render as nothing (Unicode's DerivedCoreProperties, the
#: ones seen in pasted text): soft hyphen, combining grapheme joiner, Arabic letter mark, Hangul
#: fillers, Mongolian selectors, zero-width space/joiners, directional marks and embeddings, word
#: joiner and invisible operators, variation selectors, BOM, tags
BMP_INVISIBLE_CHARS = ("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                       "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8")
INVISIBLE_CHARS = BMP_INVISIBLE_CHARS + "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def has_astral(text: str) -> bool:
    """``text`` holds a character beyond U+FFFF.  Searches with astral ranges in a character class
    are several times slower; knowing there are none lets the hot paths use a BMP-only pattern."""
    return not text.isascii() and _ASTRAL.search(text) is not None


def has_lone_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def printable(text: str) -> str:
    """``text`` with every lone surrogate written as its escape (``\\ud800``): what was sent stays
    visible in a report or a dead letter, and the result always encodes to UTF-8."""
    if not has_lone_surrogate(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


Loc = tuple[str | int, ...]


def string_paths(obj: Any, loc: Loc = (), *, keys: bool = False) -> Iterator[tuple[Loc, str]]:
    """(location, string) for every string value in a JSON value, e.g. ``("payload", "hazards", 0)``;
    with ``keys``, object keys too (at the location they open)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            here = (*loc, key)
            if keys and isinstance(key, str):
                yield here, key
            yield from string_paths(value, here, keys=keys)
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from string_paths(value, (*loc, index), keys=keys)
    elif isinstance(obj, str):
        yield loc, obj


def dotted(loc: Loc) -> str:
    """``("payload", "hazards", 0)`` -> ``payload.hazards[0]`` (keys made printable)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + printable(str(part))
    return out or "event"


def surrogate_problems(obj: Any) -> list[tuple[Loc, str]]:
    """(location, problem) for each string (value or key) holding a lone surrogate; empty for
    almost every input."""
    problems = []
    for loc, text in string_paths(obj, keys=True):
        found = _SURROGATE.search(text) if not text.isascii() else None
        if found is not None:
            problems.append((loc, f"contains a lone UTF-16 surrogate escape (\\u{ord(found.group()):04x}), which "
                                  "is not a character; send the text as UTF-8"))
    return problems


def control_char(text: str, allowed: frozenset[str] = frozenset()) -> str | None:
    """The first control character of ``text`` not in ``allowed``, as ``U+0000``; None if none."""
    for match in CONTROL.finditer(text):
        if match.group() not in allowed:
            return f"U+{ord(match.group()):04X}"
    return None


def invisible_char(text: str) -> str | None:
    found = INVISIBLE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def normalise_name(text: str) -> str:
    """A place name as it is compared and stored: NFKC (full-width letters and digits, Kangxi
    radicals and compatibility ideographs become the ordinary characters), no invisible
    characters, blanks collapsed and trimmed."""
    text = INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return " ".join(text.split())


def strip_invisible(text: str) -> str:
    return INVISIBLE.sub("", text)
