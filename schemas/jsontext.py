"""JSON text on the hot paths (event bodies, aggregates, wire values), written with orjson.

The output is the same text the standard library writes with ``ensure_ascii=False`` and compact
separators (events hold strings, integers, booleans, nulls, lists and objects - no floats - so
there is no number-formatting difference), several times faster.  Values orjson refuses
(integers beyond 64 bits, exotic key types) fall back to the standard library, so nothing that
``json`` could write is refused here.

Parsing untrusted input stays with ``json`` where duplicate keys must be detected
(``schemas.validation``); :func:`loads` is for text careledger wrote itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# dates and dataclasses go to ``default=str`` as with ``json`` (orjson would write its own form)
_SORTED = (orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
           | orjson.OPT_PASSTHROUGH_DATACLASS)


_LONG_DIGITS = re.compile(r"[0-9]{19}")


def dumps_compact(obj: Any) -> str:
    """Keys in insertion order: ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``."""
    return dumps_bytes(obj).decode("utf-8")


def dumps_canonical(obj: Any) -> str:
    """Sorted keys, so equal objects give identical text; anything else as ``str(value)``."""
    try:
        return orjson.dumps(obj, option=_SORTED, default=str).decode("utf-8")
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def dumps_bytes(obj: Any) -> bytes:
    """:func:`dumps_compact` as UTF-8 bytes (a Kafka message value)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(text: str | bytes) -> Any:
    """Parse JSON that careledger wrote (stored aggregates, bodies).  orjson reads an integer
    beyond 64 bits as a float (lossy), so text with a run of 19+ digits goes to ``json``."""
    if _LONG_DIGITS.search(text if isinstance(text, str) else text.decode("utf-8")):
        return json.loads(text)
    return orjson.loads(text)
