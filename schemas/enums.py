"""The closed vocabularies of CONTRACT.md §1, in one place so models, CSV layouts and tests agree."""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "person.registered",
    "person.profile_changed",
    "person.status_changed",
    "visit.completed",
    "payment.disbursed",
    "payment.reversed",
    "need.registered",
    "service.delivered",
    "job.placed",
    "job.posted",
    # extensions (CONTRACT.md allows more types): a caseworker assigned, acknowledged or resolved
    # an alert, or snoozed a need warning, through the API - on the log so that handling replays
    # like everything else
    "alert.handled",
    "warning.snoozed",
)
ALERT_ACTIONS: tuple[str, ...] = ("acknowledge", "resolve", "assign")
#: The district's towns (镇/街道) CONTRACT.md §1 names: the 12 of 奉化区.  Master data, so only the
#: default: the configuration (careledger/settings.py, CARELEDGER_TOWNS) says which towns a
#: deployment accepts.
DEFAULT_TOWNS: tuple[str, ...] = (
    "锦屏街道", "岳林街道", "江口街道", "西坞街道", "萧王庙街道", "方桥街道", "尚田街道",
    "溪口镇", "莼湖镇", "裘村镇", "大堰镇", "松岙镇",
)
PERSONLESS_TYPES: frozenset[str] = frozenset({"job.posted"})

CATEGORIES: tuple[str, ...] = (
    "visual", "hearing", "speech", "physical", "intellectual", "mental", "multiple",
)
GRADES: tuple[int, ...] = (1, 2, 3, 4)
STATUSES: tuple[str, ...] = ("active", "cancelled", "deceased")
VISIT_KINDS: tuple[str, ...] = ("home_visit", "rehab_in_village", "family_doctor", "assessment")
HAZARDS: tuple[str, ...] = (
    "living_alone_no_caregiver",
    "unsafe_housing",
    "mental_health_crisis",
    "abuse_or_neglect",
    "medical_emergency",
)
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
    "employment", "assistive_device", "rehabilitation", "education", "accessibility_modification", "care",
)
SERVICES: tuple[str, ...] = (
    "assistive_device_fitting",
    "autism_child_rehab",
    "rehab_service",
    "vocational_training",
    "accessibility_modification",
    "mental_health_settlement",
    "online_ward",
    "group_counseling",
    "education_support",
)
PLACEMENT_KINDS: tuple[str, ...] = (
    "proportional", "centralized", "self_employed", "sheltered", "public_welfare", "flexible",
)
