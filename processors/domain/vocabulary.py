"""Contract vocabularies the domain reasons about (CONTRACT.md §1–§2).

Kept here rather than imported from ``schemas`` so the pure domain (and the rules loader, which
must reject unknown programs/needs/hazards) has no dependency on the validation layer.
"""

from __future__ import annotations

PROGRAMS: tuple[str, ...] = (
    "living_subsidy",
    "nursing_subsidy",
    "medical_insurance_subsidy",
    "pension_insurance_subsidy",
    "self_employed_pension_subsidy",
    "accident_insurance",
    "rehab_subsidy",
    "education_aid",
)
NEEDS: tuple[str, ...] = (
    "employment",
    "assistive_device",
    "rehabilitation",
    "education",
    "accessibility_modification",
    "care",
)
HAZARDS: tuple[str, ...] = (
    "living_alone_no_caregiver",
    "unsafe_housing",
    "mental_health_crisis",
    "abuse_or_neglect",
    "medical_emergency",
)
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium")
STATUSES: tuple[str, ...] = ("active", "cancelled", "deceased")
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
