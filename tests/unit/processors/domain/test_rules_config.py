import re
from pathlib import Path

import pytest

from careledger.settings import DEFAULT_RULES_PATH
from processors.domain.rules_config import RulesConfigError, default_rules, load_rules, parse_rules
from processors.domain.vocabulary import ALERT_RULES, HAZARDS, NEEDS, PROGRAMS, WARNING_RULES

DEFAULT_TEXT = DEFAULT_RULES_PATH.read_text(encoding="utf-8")


def edited(old: str, new: str, count: int = 1) -> str:
    assert old in DEFAULT_TEXT, old
    return DEFAULT_TEXT.replace(old, new, count)


def error_of(text: str) -> str:
    with pytest.raises(RulesConfigError) as info:
        parse_rules(text)
    return str(info.value)


def test_defaults_match_the_contract():
    rules = default_rules()
    yuan = {
        "living_subsidy": (100, 1000), "nursing_subsidy": (100, 1000),
        "medical_insurance_subsidy": (50, 2000), "pension_insurance_subsidy": (50, 2000),
        "self_employed_pension_subsidy": (100, 5000), "accident_insurance": (10, 200),
        "rehab_subsidy": (50, 20000), "education_aid": (100, 20000),
    }
    assert dict(rules.amount_ranges_fen) == {p: (lo * 100, hi * 100) for p, (lo, hi) in yuan.items()}
    assert dict(rules.need_deadline_days) == {
        "employment": 60, "assistive_device": 30, "rehabilitation": 30, "education": 60,
        "accessibility_modification": 90, "care": 30,
    }
    assert dict(rules.hazard_severity) == {
        "living_alone_no_caregiver": "high", "unsafe_housing": "high", "mental_health_crisis": "critical",
        "abuse_or_neglect": "critical", "medical_emergency": "critical",
    }
    assert dict(rules.rule_severity) == {
        "duplicate_payment": "high", "payment_after_end": "high", "amount_out_of_range": "medium",
    }
    assert rules.enabled_rules == frozenset(ALERT_RULES + WARNING_RULES)
    assert (rules.visit_overdue_days, rules.certificate_expiring_days) == (90, 60)
    assert (rules.visit_overdue_max_grade, rules.nursing_subsidy_max_grade) == (2, 2)
    assert set(rules.amount_ranges_fen) == set(PROGRAMS)
    assert set(rules.need_deadline_days) == set(NEEDS)
    assert set(rules.hazard_severity) == set(HAZARDS)


def test_default_file_has_chinese_labels():
    assert "生活补贴" in DEFAULT_TEXT and "需求预警" in DEFAULT_TEXT


def test_load_rules_from_path_equals_default(tmp_path: Path):
    path = tmp_path / "custom.toml"
    path.write_text(DEFAULT_TEXT, encoding="utf-8")
    assert load_rules(path) == default_rules()
    assert load_rules(str(path)) == default_rules()


def test_min_greater_than_max_is_rejected_with_table_name():
    text = edited("[amount_ranges.living_subsidy]         # 困难残疾人生活补贴\nmin_yuan = 100",
                  "[amount_ranges.living_subsidy]\nmin_yuan = 1001")
    assert error_of(text) == "rules.toml: [amount_ranges.living_subsidy] min_yuan must be ≤ max_yuan"


def test_min_equal_max_is_allowed():
    text = edited("[amount_ranges.accident_insurance]     # 意外伤害保险\nmin_yuan = 10",
                  "[amount_ranges.accident_insurance]\nmin_yuan = 200")
    assert parse_rules(text).amount_ranges_fen["accident_insurance"] == (20000, 20000)


def test_yuan_with_cents_is_converted_exactly():
    text = edited("min_yuan = 10\n", "min_yuan = 10.05\n")
    assert parse_rules(text).amount_ranges_fen["accident_insurance"] == (1005, 20000)


@pytest.mark.parametrize("value, fragment", [
    ("10.001", "at most 2 decimals"),
    ("-1", "must be ≥ 0"),
    ('"10"', "must be a number of yuan"),
    ("true", "must be a number of yuan"),
    ("inf", "finite"),
    ("nan", "finite"),
])
def test_bad_amounts(value: str, fragment: str):
    message = error_of(edited("min_yuan = 10\n", f"min_yuan = {value}\n"))
    assert message.startswith("rules.toml: [amount_ranges.accident_insurance] min_yuan")
    assert fragment in message


def test_unknown_key_in_program_table():
    message = error_of(edited("min_yuan = 10\n", "min_yuan = 10\nmax_yaun = 3\n"))
    assert message == ("rules.toml: [amount_ranges.accident_insurance] unknown key(s) max_yaun "
                       "(allowed: min_yuan, max_yuan)")


def test_unknown_program_and_missing_program():
    assert "unknown key(s) rent_subsidy" in error_of(DEFAULT_TEXT + "\n[amount_ranges.rent_subsidy]\nmin_yuan=1\nmax_yuan=2\n")
    text = re.sub(r"\[amount_ranges\.education_aid\][^\[]*", "", DEFAULT_TEXT)
    assert error_of(text) == "rules.toml: [amount_ranges] missing education_aid"


def test_missing_need_deadline():
    text = edited("care = 30 ", "# care = 30 ")
    assert error_of(text) == "rules.toml: [warnings.need_unmet.deadline_days] missing care"


def test_unknown_need_deadline():
    message = error_of(edited("care = 30 ", "care = 30\nhousing = 10 "))
    assert message.startswith("rules.toml: [warnings.need_unmet.deadline_days] unknown key(s) housing")


def test_missing_hazard_severity_and_bad_severity():
    assert error_of(edited('unsafe_housing = "high"', "")) == (
        "rules.toml: [alerts.visit_hazard.severity] missing unsafe_housing")
    message = error_of(edited('unsafe_housing = "high"', 'unsafe_housing = "urgent"'))
    assert message == ("rules.toml: [alerts.visit_hazard.severity] unsafe_housing must be one of "
                       "critical, high, medium, got 'urgent'")


def test_unknown_top_level_and_rule_keys():
    assert "unknown key(s) thresholds" in error_of(DEFAULT_TEXT + "\n[thresholds]\nx = 1\n")
    assert error_of(DEFAULT_TEXT.replace("[alerts.payment_after_end]", "[alerts.payment_after_death]")).startswith(
        "rules.toml: [alerts] unknown key(s) payment_after_death")
    message = error_of(edited("days = 90 ", "days = 90\nday = 3 "))
    assert message.startswith("rules.toml: [warnings.visit_overdue] unknown key(s) day")


def test_missing_tables():
    text = re.sub(r"\[warnings\.certificate_expiring\][^\[]*", "", DEFAULT_TEXT)
    assert error_of(text) == "rules.toml: [warnings] missing table [warnings.certificate_expiring]"
    assert error_of("") == "rules.toml: missing table [alerts]"


@pytest.mark.parametrize("old, new, fragment", [
    ("days = 90 ", "days = -1 ", "[warnings.visit_overdue] days must be ≥ 0, got -1"),
    ("days = 90 ", "days = 90.5 ", "[warnings.visit_overdue] days must be an integer, got 90.5"),
    ("days = 60 ", "days = true ", "[warnings.certificate_expiring] days must be an integer, got True"),
    ("max_grade = 2   ", "max_grade = 5   ", "[warnings.visit_overdue] max_grade must be between 1 and 4, got 5"),
    ("employment = 60", 'employment = "60"', "[warnings.need_unmet.deadline_days] employment must be an integer"),
])
def test_bad_integers(old: str, new: str, fragment: str):
    assert fragment in error_of(edited(old, new))


def test_disable_a_rule():
    text = edited("[alerts.duplicate_payment]             # 重复发放: >1 non-reversed payment, same program + period\nenabled = true",
                  "[alerts.duplicate_payment]\nenabled = false")
    rules = parse_rules(text)
    assert not rules.enabled("duplicate_payment") and rules.enabled("payment_after_end")


def test_enabled_is_optional_but_must_be_boolean():
    text = DEFAULT_TEXT.replace("enabled = true\n", "")
    assert parse_rules(text).enabled_rules == default_rules().enabled_rules
    assert "enabled must be true or false, got 'yes'" in error_of(DEFAULT_TEXT.replace("enabled = true", 'enabled = "yes"', 1))


def test_severity_per_rule_is_configurable():
    text = edited('severity = "medium"', 'severity = "critical"')
    assert parse_rules(text).rule_severity["amount_out_of_range"] == "critical"


def test_invalid_toml_and_unreadable_file(tmp_path: Path):
    assert error_of("alerts = [").startswith("rules.toml: not valid TOML:")
    with pytest.raises(RulesConfigError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.toml")
    bad = tmp_path / "mine.toml"
    bad.write_text("[alerts]\nx=1\n", encoding="utf-8")
    with pytest.raises(RulesConfigError, match=r"^mine\.toml: \[alerts\] unknown key\(s\) x"):
        load_rules(bad)


def test_table_where_value_expected():
    assert "alerts must be a table" in error_of('alerts = 3\n')


def test_the_shipped_rules_file_is_the_contracts_defaults() -> None:
    """careledger/rules.toml (what people edit) and default_rules() (the contract, in code) agree."""
    assert load_rules(DEFAULT_RULES_PATH) == default_rules()
