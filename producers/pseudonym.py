"""Pseudonymisation of national ID numbers, and redaction for everything humans read.

``person_id = "p" + hex(HMAC-SHA256(secret, normalised id_number))[:32]``: stable for one secret
(so a person's events join up), not reversible without it, and different under another secret.
The secret comes from ``settings.secret("hmac-key")``; a raw ID number is never logged, published
or quoted in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from careledger.settings import Settings
from schemas.idnumber import (
    MASK,
    contains_id_number,
    id_number_problem,
    is_valid_id_number,
    mask_ids,
    normalise_id_number,
)
from schemas.text import printable

__all__ = [
    "InvalidIdNumber", "Pseudonymiser", "contains_id_number", "is_valid_id_number", "mask_ids", "redact",
    "redact_text",
]

SECRET_NAME = "hmac-key"
#: Keys whose values are ID numbers whatever they look like (JSON field, CSV headers).
ID_FIELDS = frozenset({
    "id_number", "certificate_no", "身份证号", "身份证号码", "公民身份号码", "残疾证号", "残疾证号码", "证件号码",
})
# "id_number": <anything> inside raw text that did not even parse as JSON.
_ID_FIELD_IN_TEXT = re.compile(r'("id_number"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\s]*)')


class InvalidIdNumber(ValueError):
    """The message names the problem, never the number."""


class Pseudonymiser:
    def __init__(self, secret: bytes, sealer: Any = None) -> None:
        if not secret:
            raise ValueError("the HMAC secret must not be empty")
        self._secret = secret
        # seals sensitive payload fields after pseudonymisation (producers/keystore.py); None: off
        self.sealer = sealer

    @classmethod
    def from_settings(cls, settings: Settings) -> Pseudonymiser:
        from producers.keystore import LazySealer

        return cls(settings.secret(SECRET_NAME), LazySealer(settings))

    @property
    def secret(self) -> bytes:
        """The HMAC secret, for worker processes of the same run (producers/ingest_workers.py)."""
        return self._secret

    def person_id(self, id_number: str) -> str:
        normalised = normalise_id_number(id_number)
        problem = id_number_problem(normalised)
        if problem:
            raise InvalidIdNumber(f"id_number: {problem}")
        digest = hmac.new(self._secret, normalised.encode("ascii"), hashlib.sha256).hexdigest()
        return "p" + digest[:32]

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """Replace ``id_number`` by ``person_id`` in a canonical event (in place, returned)."""
        id_number = event.pop("id_number", None)
        if id_number is not None:
            event["person_id"] = self.person_id(id_number)
        return event

    def __repr__(self) -> str:  # never show the secret
        return "Pseudonymiser(<secret>)"


def redact(obj: Any) -> Any:
    """A copy of ``obj`` safe for DLQ records, reports and logs.

    ``id_number`` values become a mask; any ID-like or certificate-number-like run of characters
    in any string (keys included) is masked, however it is written (grouped, full-width).  Bytes
    are decoded with replacement first; lone surrogates are written as escapes.
    """
    if isinstance(obj, dict):
        return {
            redact(key) if isinstance(key, str) else key: (MASK if key in ID_FIELDS and value is not None
                                                           else redact(value))
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact(item) for item in obj]
    if isinstance(obj, bytes | bytearray):
        return redact_text(bytes(obj).decode("utf-8", "replace"))
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) >= 10**16:
        return MASK  # an ID number that went through a spreadsheet as a number
    return obj


def redact_text(text: str) -> str:
    """Mask ID-like runs and the value of any ``"id_number": ...`` in free text; lone surrogates
    become their escapes, so the result always encodes (a report, a dead letter, a terminal)."""
    text = printable(text)
    if '"id_number"' in text:
        text = _ID_FIELD_IN_TEXT.sub(lambda m: m.group(1) + f'"{MASK}"', text)
    return mask_ids(text)
