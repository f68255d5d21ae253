"""Query parameter types of the read API, strict and documented as they are checked.

A date is ``YYYY-MM-DD`` and nothing else (pydantic alone would read ``from=0`` as 1970-01-01); a
boolean is ``true`` or ``false``; ``group_by`` is repeated (``group_by=town&group_by=month``), each
value one of the listed columns.  What the OpenAPI description says a parameter accepts is exactly
what the API accepts: the schemathesis test (tests/unit/test_fuzz_api.py) holds it to that.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BeforeValidator, WithJsonSchema

from projections.registry import NAME_RE

MAX_LIMIT = 10_000
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# as_of: the warnings do month and deadline arithmetic around the date (years 1900-8999 are safe)
AS_OF_PATTERN = "^(19[0-9]{2}|[2-8][0-9]{3})-[0-9]{2}-[0-9]{2}$"
AS_OF_RE = re.compile(AS_OF_PATTERN[1:-1])
SNAPSHOT_PATTERN = "^" + NAME_RE.pattern.strip("^$") + "$"

Kind = Literal["payment", "service", "visit", "job", "need", "person", "posting"]
GroupColumn = Literal["town", "month", "key", "date"]


def _date_text(pattern: re.Pattern[str], message: str) -> Any:
    def check(value: object) -> object:
        if isinstance(value, date):
            return value
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(message)
        return value

    return check


def _bool_text(value: object) -> object:
    if isinstance(value, bool):
        return value
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


StrictDate = Annotated[date, BeforeValidator(_date_text(DATE_RE, "must be a date written YYYY-MM-DD")),
                       WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN})]
AsOfDate = Annotated[date, BeforeValidator(_date_text(AS_OF_RE, "must be a date YYYY-MM-DD between 1900-01-01 "
                                                                "and 8999-12-31")),
                     WithJsonSchema({"type": "string", "format": "date", "pattern": AS_OF_PATTERN})]
StrictBool = Annotated[bool, BeforeValidator(_bool_text), WithJsonSchema({"type": "boolean"})]

DateFrom = Annotated[StrictDate | None, Query(alias="from", description="first date (YYYY-MM-DD, inclusive)")]
DateTo = Annotated[StrictDate | None, Query(alias="to", description="last date (YYYY-MM-DD, inclusive)")]
Limit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description=f"at most {MAX_LIMIT} items")]
Offset = Annotated[int, Query(ge=0, le=2**62, description="items to skip")]  # larger overflows SQL integers
Snapshot = Annotated[str | None, Query(pattern=SNAPSHOT_PATTERN, description="a named snapshot "
                                                                          "(careledger replay snapshot)")]
Key = Annotated[str | None, Query(max_length=64, description="program, service, visit_kind, placement_kind, need "
                                                              "or category")]
Town = Annotated[str | None, Query(max_length=128, description="镇/街道")]
PersonId = Annotated[str | None, Query(max_length=128, description="a pseudonymous person_id")]
Rule = Annotated[str | None, Query(max_length=64)]

__all__ = [
    "AS_OF_PATTERN", "DATE_PATTERN", "MAX_LIMIT", "AsOfDate", "DateFrom", "DateTo", "GroupColumn", "Key", "Kind",
    "Limit", "Offset", "PersonId", "Rule", "Snapshot", "StrictBool", "StrictDate", "Town",
]
