"""The vocabularies the domain reasons about (CONTRACT.md §1–§2).

The closed lists of the event catalogue come from ``schemas.enums`` (one place for models, CSV
layouts, rules loader and domain; that module is plain data with no dependencies); the names that
only the domain knows — rules, severities — are defined here.
"""

from __future__ import annotations

from schemas.enums import HAZARDS, NEEDS, PROGRAMS, STATUSES

__all__ = [
    "ALERT_RULES", "ENDING_STATUSES", "HAZARDS", "HOME_VISIT", "NEEDS", "NURSING_PROGRAM", "PROGRAMS",
    "SEVERITIES", "STATUSES", "WARNING_RULES",
]

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium")
ENDING_STATUSES: frozenset[str] = frozenset({"cancelled", "deceased"})

ALERT_RULES: tuple[str, ...] = (
    "duplicate_payment",
    "payment_after_end",
    "visit_hazard",
    "amount_out_of_range",
)
WARNING_RULES: tuple[str, ...] = (
    "visit_overdue",
    "need_unmet",
    "certificate_expiring",
    "nursing_subsidy_missing",
)

HOME_VISIT = "home_visit"
NURSING_PROGRAM = "nursing_subsidy"
