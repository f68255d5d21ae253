"""Business thresholds (alert ranges, warning deadlines, severities) from the editable rules TOML.

Caseworkers edit the file, so validation is strict and every message names the file, the table
and the key: a typo must stop start-up rather than silently fall back to a default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from processors.domain.vocabulary import (
    ALERT_RULES,
    HAZARDS,
    NEEDS,
    PROGRAMS,
    SEVERITIES,
    WARNING_RULES,
)

FEN_PER_YUAN = 100
MAX_GRADE = 4  # grades run 1 (most severe) .. 4 (CONTRACT §1)


class RulesConfigError(ValueError):
    """The rules file is unreadable or invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Validated rules.  Amounts are in fen; day counts are whole days; mappings are complete
    (every program, need and hazard of the contract has an entry)."""

    amount_ranges_fen: Mapping[str, tuple[int, int]]  # program -> (min, max), inclusive
    need_deadline_days: Mapping[str, int]
    hazard_severity: Mapping[str, str]
    rule_severity: Mapping[str, str]  # duplicate_payment, payment_after_end, amount_out_of_range
    enabled_rules: frozenset[str]
    visit_overdue_days: int = 90
    visit_overdue_max_grade: int = 2
    certificate_expiring_days: int = 60
    nursing_subsidy_max_grade: int = 2

    def enabled(self, rule: str) -> bool:
        return rule in self.enabled_rules


# --- loading ------------------------------------------------------------------------------------


#: CONTRACT.md §2's defaults, in yuan and days; ``careledger/rules.toml`` ships the same values for
#: people to edit (a unit test keeps the two equal).
CONTRACT_RANGES_YUAN: dict[str, tuple[int, int]] = {
    "living_subsidy": (100, 1000), "nursing_subsidy": (100, 1000), "medical_insurance_subsidy": (50, 2000),
    "pension_insurance_subsidy": (50, 2000), "self_employed_pension_subsidy": (100, 5000),
    "accident_insurance": (10, 200), "rehab_subsidy": (50, 20000), "education_aid": (100, 20000),
}
CONTRACT_NEED_DEADLINES: dict[str, int] = {
    "employment": 60, "assistive_device": 30, "rehabilitation": 30, "education": 60,
    "accessibility_modification": 90, "care": 30,
}
CRITICAL_HAZARDS = frozenset({"mental_health_crisis", "abuse_or_neglect", "medical_emergency"})


def default_rules() -> RulesConfig:
    """The contract's rules (CONTRACT.md §2), as ``careledger/rules.toml`` ships them."""
    return RulesConfig(
        amount_ranges_fen={p: (lo * FEN_PER_YUAN, hi * FEN_PER_YUAN) for p, (lo, hi) in CONTRACT_RANGES_YUAN.items()},
        need_deadline_days=dict(CONTRACT_NEED_DEADLINES),
        hazard_severity={h: "critical" if h in CRITICAL_HAZARDS else "high" for h in HAZARDS},
        rule_severity={"duplicate_payment": "high", "payment_after_end": "high", "amount_out_of_range": "medium"},
        enabled_rules=frozenset(ALERT_RULES) | frozenset(WARNING_RULES),
    )


def load_rules(path: str | Path) -> RulesConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesConfigError(f"{path}: cannot read rules file ({exc.strerror})") from exc
    return parse_rules(text, source=path.name)


def parse_rules(text: str, source: str = "rules.toml") -> RulesConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesConfigError(f"{source}: not valid TOML: {exc}") from exc
    return _Parser(source).config(data)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, table: str, message: str) -> RulesConfigError:
        where = f"[{table}] " if table else ""
        return RulesConfigError(f"{self.source}: {where}{message}")

    # -- generic checks --
    def table(self, parent: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
        full = f"{where}.{name}" if where else name
        if name not in parent:
            raise self.fail(where, f"missing table [{full}]")
        value = parent[name]
        if not isinstance(value, dict):
            raise self.fail(where, f"{name} must be a table [{full}]")
        return value

    def only_keys(self, table: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")

    def exact_keys(self, table: Mapping[str, Any], where: str, expected: tuple[str, ...]) -> None:
        self.only_keys(table, where, expected)
        missing = [key for key in expected if key not in table]
        if missing:
            raise self.fail(where, f"missing {', '.join(missing)}")

    def integer(self, table: Mapping[str, Any], key: str, where: str, low: int, high: int | None = None) -> int:
        if key not in table:
            raise self.fail(where, f"missing {key}")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"{key} must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"≥ {low}"
            raise self.fail(where, f"{key} must be {bound}, got {value}")
        return value

    def enabled(self, table: Mapping[str, Any], where: str) -> bool:
        value = table.get("enabled", True)
        if not isinstance(value, bool):
            raise self.fail(where, f"enabled must be true or false, got {value!r}")
        return value

    def severity(self, table: Mapping[str, Any], key: str, where: str) -> str:
        if key not in table:
            raise self.fail(where, f"missing {key}")
        value = table[key]
        if not isinstance(value, str) or value not in SEVERITIES:
            raise self.fail(where, f"{key} must be one of {', '.join(SEVERITIES)}, got {value!r}")
        return value

    def fen(self, table: Mapping[str, Any], key: str, where: str) -> int:
        if key not in table:
            raise self.fail(where, f"missing {key}")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{key} must be a number of yuan, got {value!r}")
        try:
            fen = Decimal(str(value)) * FEN_PER_YUAN
        except InvalidOperation as exc:  # nan/inf
            raise self.fail(where, f"{key} must be a finite number, got {value!r}") from exc
        if not fen.is_finite() or fen != fen.to_integral_value():
            raise self.fail(where, f"{key} must be a finite amount with at most 2 decimals, got {value!r}")
        if fen < 0:
            raise self.fail(where, f"{key} must be ≥ 0, got {value!r}")
        return int(fen)

    # -- the file --
    def config(self, data: Mapping[str, Any]) -> RulesConfig:
        self.only_keys(data, "", ("alerts", "amount_ranges", "warnings"))
        enabled: set[str] = set()
        rule_severity, hazard_severity = self.alerts(self.table(data, "alerts", ""), enabled)
        ranges = self.amount_ranges(self.table(data, "amount_ranges", ""))
        warnings = self.table(data, "warnings", "")
        self.only_keys(warnings, "warnings", WARNING_RULES)

        where = "warnings.visit_overdue"
        visit = self.table(warnings, "visit_overdue", "warnings")
        self.only_keys(visit, where, ("enabled", "days", "max_grade"))
        if self.enabled(visit, where):
            enabled.add("visit_overdue")
        visit_days = self.integer(visit, "days", where, 0)
        visit_grade = self.integer(visit, "max_grade", where, 1, MAX_GRADE)

        where = "warnings.need_unmet"
        need = self.table(warnings, "need_unmet", "warnings")
        self.only_keys(need, where, ("enabled", "deadline_days"))
        if self.enabled(need, where):
            enabled.add("need_unmet")
        deadlines_table = self.table(need, "deadline_days", where)
        where = "warnings.need_unmet.deadline_days"
        self.exact_keys(deadlines_table, where, NEEDS)
        deadlines = {name: self.integer(deadlines_table, name, where, 0) for name in NEEDS}

        where = "warnings.certificate_expiring"
        cert = self.table(warnings, "certificate_expiring", "warnings")
        self.only_keys(cert, where, ("enabled", "days"))
        if self.enabled(cert, where):
            enabled.add("certificate_expiring")
        cert_days = self.integer(cert, "days", where, 0)

        where = "warnings.nursing_subsidy_missing"
        nursing = self.table(warnings, "nursing_subsidy_missing", "warnings")
        self.only_keys(nursing, where, ("enabled", "max_grade"))
        if self.enabled(nursing, where):
            enabled.add("nursing_subsidy_missing")
        nursing_grade = self.integer(nursing, "max_grade", where, 1, MAX_GRADE)

        return RulesConfig(
            amount_ranges_fen=ranges,
            need_deadline_days=deadlines,
            hazard_severity=hazard_severity,
            rule_severity=rule_severity,
            enabled_rules=frozenset(enabled),
            visit_overdue_days=visit_days,
            visit_overdue_max_grade=visit_grade,
            certificate_expiring_days=cert_days,
            nursing_subsidy_max_grade=nursing_grade,
        )

    def alerts(self, alerts: Mapping[str, Any], enabled: set[str]) -> tuple[dict[str, str], dict[str, str]]:
        self.only_keys(alerts, "alerts", ALERT_RULES)
        rule_severity: dict[str, str] = {}
        for rule in ("duplicate_payment", "payment_after_end", "amount_out_of_range"):
            where = f"alerts.{rule}"
            table = self.table(alerts, rule, "alerts")
            self.only_keys(table, where, ("enabled", "severity"))
            if self.enabled(table, where):
                enabled.add(rule)
            rule_severity[rule] = self.severity(table, "severity", where)
        where = "alerts.visit_hazard"
        hazard = self.table(alerts, "visit_hazard", "alerts")
        self.only_keys(hazard, where, ("enabled", "severity"))
        if self.enabled(hazard, where):
            enabled.add("visit_hazard")
        per_hazard = self.table(hazard, "severity", where)
        where = "alerts.visit_hazard.severity"
        self.exact_keys(per_hazard, where, HAZARDS)
        return rule_severity, {name: self.severity(per_hazard, name, where) for name in HAZARDS}

    def amount_ranges(self, ranges: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        self.exact_keys(ranges, "amount_ranges", PROGRAMS)
        result: dict[str, tuple[int, int]] = {}
        for program in PROGRAMS:
            where = f"amount_ranges.{program}"
            table = self.table(ranges, program, "amount_ranges")
            self.exact_keys(table, where, ("min_yuan", "max_yuan"))
            low, high = self.fen(table, "min_yuan", where), self.fen(table, "max_yuan", where)
            if low > high:
                raise self.fail(where, "min_yuan must be ≤ max_yuan")
            result[program] = (low, high)
        return result
