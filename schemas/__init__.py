"""Event schemas: pydantic models, validation with field-path reasons, upcasters, JSON Schema."""

from schemas.upcasters import CURRENT_VERSIONS, upcast
from schemas.validation import (
    Accepted,
    InvalidJson,
    PoisonRecord,
    Rejected,
    decode_consumed,
    event_date,
    parse_json_line,
    partition_key,
    validate_event,
)

__all__ = [
    "CURRENT_VERSIONS",
    "Accepted",
    "InvalidJson",
    "PoisonRecord",
    "Rejected",
    "decode_consumed",
    "event_date",
    "parse_json_line",
    "partition_key",
    "upcast",
    "validate_event",
]
