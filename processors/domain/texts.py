"""What an alert or a warning means, in Chinese and in English: what is due, since when, and what
would clear it - the words a caseworker reads in the work queue (issue 14).

Pure: built from the alert's or warning's own fields and the rules in force.  The read API adds
them to every item (``reason_zh``, ``reason_en``, ``clears_zh``, ``clears_en``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.domain.rules_config import FEN_PER_YUAN, RulesConfig

PROGRAM_ZH = {
    "living_subsidy": "困难残疾人生活补贴", "nursing_subsidy": "重度残疾人护理补贴",
    "medical_insurance_subsidy": "居民基本医疗保险参保补助", "pension_insurance_subsidy": "居民社会养老保险补助",
    "self_employed_pension_subsidy": "个体工商户养老保险补助", "accident_insurance": "残疾人意外伤害综合商业保险",
    "rehab_subsidy": "康复项目补贴", "education_aid": "残疾学生及残疾人子女教育补助",
}
HAZARD_ZH = {
    "living_alone_no_caregiver": "独居无人照料", "unsafe_housing": "住房安全隐患", "mental_health_crisis": "精神危机",
    "abuse_or_neglect": "虐待或疏于照料", "medical_emergency": "医疗急症",
}
NEED_ZH = {
    "employment": "就业", "assistive_device": "辅助器具", "rehabilitation": "康复", "education": "教育",
    "accessibility_modification": "无障碍改造", "care": "照护",
}
RULE_ZH = {
    "duplicate_payment": "重复发放", "payment_after_end": "注销/死亡后发放", "visit_hazard": "走访发现隐患",
    "amount_out_of_range": "发放金额异常", "visit_overdue": "入户访视逾期", "need_unmet": "需求未满足",
    "certificate_expiring": "残疾证即将到期", "nursing_subsidy_missing": "护理补贴未发放",
}
SEVERITY_ZH = {"critical": "紧急", "high": "高", "medium": "中"}


@dataclass(frozen=True)
class Reason:
    reason_zh: str
    reason_en: str
    clears_zh: str
    clears_en: str

    def as_fields(self) -> dict[str, str]:
        return {"reason_zh": self.reason_zh, "reason_en": self.reason_en, "clears_zh": self.clears_zh,
                "clears_en": self.clears_en}


def _yuan(fen: int) -> str:
    return f"{fen / FEN_PER_YUAN:,.2f}".rstrip("0").rstrip(".")


def alert_reason(alert: dict[str, Any], rules: RulesConfig) -> Reason:
    """``alert``: an alert as the read API answers it (rule, program, period, hazard, event_ids ...)."""
    rule = alert["rule"]
    program, period = alert.get("program") or "", alert.get("period") or ""
    program_zh = PROGRAM_ZH.get(program, program)
    if rule == "duplicate_payment":
        n = len(alert.get("event_ids") or ())
        return Reason(
            f"{program_zh} {period} 发放了 {n} 笔（同一人同一项目同一月份只应一笔）",
            f"{n} payments of {program} for {period} (one is due per person, program and month)",
            "冲正多余的发放（payment.reversed），只剩一笔后自动解决",
            "reverse the extra payments (payment.reversed); it resolves itself when one is left")
    if rule == "payment_after_end":
        return Reason(
            f"人员已注销或死亡，{period} 仍发放{program_zh}",
            f"{program} paid for {period}, after the person's cancellation or death",
            "冲正该笔发放（payment.reversed）后自动解决",
            "reverse the payment (payment.reversed); it resolves itself")
    if rule == "amount_out_of_range":
        low, high = rules.amount_ranges_fen.get(program, (0, 0))
        return Reason(
            f"{program_zh} {period} 单笔金额超出 {_yuan(low)}–{_yuan(high)} 元",
            f"a {program} payment for {period} outside {_yuan(low)}-{_yuan(high)} yuan",
            "核实金额：错误则冲正（payment.reversed）；无误则标记已解决并注明",
            "check the amount: reverse it if wrong (payment.reversed), else resolve with a note")
    if rule == "visit_hazard":
        hazard = alert.get("hazard") or ""
        return Reason(
            f"走访发现隐患：{HAZARD_ZH.get(hazard, hazard)}（{alert.get('detected_at', '')[:10]}）",
            f"a visit found: {hazard.replace('_', ' ')} ({alert.get('detected_at', '')[:10]})",
            "联系并处置后，标记已解决并写明处置情况",
            "contact the person, act, then resolve it with a note of what was done")
    return Reason(RULE_ZH.get(rule, rule), rule, "", "")


def warning_reason(warning: dict[str, Any], rules: RulesConfig) -> Reason:
    """``warning``: a warning as the read API answers it (rule, since, detail, need ...)."""
    rule, since = warning["rule"], warning["since"]
    detail = warning.get("detail") or ""
    if rule == "visit_overdue":
        days = rules.visit_overdue_days
        base = detail.rsplit(" ", 1)[-1] if detail else ""
        first = "登记以来未入户访视" if detail.startswith("no home visit") else "上次入户访视"
        return Reason(
            f"{first} {base}，超过 {days} 天未访视，自 {since} 起逾期",
            f"{detail}; no home visit for more than {days} days, due since {since}",
            "完成一次入户访视（visit.completed，home_visit）",
            "a home visit (visit.completed with visit_kind home_visit)")
    if rule == "need_unmet":
        need = warning.get("need") or ""
        deadline = rules.need_deadline_days.get(need, 0)
        return Reason(
            f"{NEED_ZH.get(need, need)}需求登记后 {deadline} 天内未满足，自 {since} 起逾期",
            f"{need.replace('_', ' ')} need not met within {deadline} days of its registration, due since {since}",
            f"提供相应服务或就业安置，并注明需求编号 {warning.get('need_id', '')}（service.delivered / job.placed）",
            f"a service or job placement naming need {warning.get('need_id', '')} (service.delivered / job.placed)")
    if rule == "certificate_expiring":
        expires = detail.rsplit(" ", 1)[-1] if detail else ""
        return Reason(
            f"残疾证将于 {expires} 到期（提前 {rules.certificate_expiring_days} 天提醒，自 {since} 起）",
            f"the disability certificate expires {expires} (reminder {rules.certificate_expiring_days} days ahead, "
            f"from {since})",
            "换发残疾证后登记新的有效期（person.profile_changed: certificate_expires）",
            "renew the certificate and record its new expiry (person.profile_changed: certificate_expires)")
    if rule == "nursing_subsidy_missing":
        period = detail.rsplit(" ", 1)[-1] if detail else ""
        return Reason(
            f"重度残疾人（{rules.nursing_subsidy_max_grade} 级及以上）{period} 无护理补贴发放记录",
            f"grade {rules.nursing_subsidy_max_grade} or more severe, no nursing_subsidy payment for {period}",
            f"发放 {period} 的重度残疾人护理补贴（payment.disbursed，nursing_subsidy）",
            f"the nursing_subsidy payment for {period} (payment.disbursed)")
    return Reason(RULE_ZH.get(rule, rule), rule, "", "")


__all__ = ["HAZARD_ZH", "NEED_ZH", "PROGRAM_ZH", "RULE_ZH", "SEVERITY_ZH", "Reason", "alert_reason",
           "warning_reason"]
