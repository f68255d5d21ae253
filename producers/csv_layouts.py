"""CSV layouts: which column (Chinese or English header) fills which event field, and how a cell
becomes a JSON value.  One layout per event type; docs/csv-import.md is the user-facing copy.

Converters raise ``CellError`` with a message that never quotes the cell (it may be an ID number).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas import enums


class CellError(ValueError):
    pass


# ---- cell converters --------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


def text(cell: str) -> str:
    return cell.strip()


def integer(cell: str) -> int:
    value = _norm(cell)
    if re.fullmatch(r"[+-]?[0-9]+(\.0+)?", value):
        return int(Decimal(value))
    raise CellError("must be a whole number")


_CN_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "1": 1, "2": 2, "3": 3, "4": 4}


def grade(cell: str) -> int:
    value = _norm(cell).removeprefix("残疾").removesuffix("级").removeprefix("第")
    if value in _CN_DIGITS:
        return _CN_DIGITS[value]
    return integer(value)  # out-of-range numbers are left for validation to explain


_TRUE = {"是", "有", "困难", "y", "yes", "true", "t", "1", "√"}
_FALSE = {"否", "无", "不是", "非困难", "n", "no", "false", "f", "0", "×"}


def boolean(cell: str) -> bool:
    value = _norm(cell)
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CellError("must be 是/否 (yes/no, true/false, 1/0)")


_DATE = re.compile(r"([0-9]{4})[-/.年]([0-9]{1,2})[-/.月]([0-9]{1,2})日?")


def date_text(cell: str) -> str:
    value = _norm(cell)
    match = _DATE.fullmatch(value) or re.fullmatch(r"([0-9]{4})([0-9]{2})([0-9]{2})", value)
    if not match:
        raise CellError("must be a date like 2024-03-05 (or 2024/3/5, 2024年3月5日)")
    return _real_date(*match.groups())


def _real_date(year: str, month: str, day: str) -> str:
    from datetime import date

    try:
        return date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        raise CellError("is not a real date") from None


def period(cell: str) -> str:
    """A month; also the first day of a month (a spreadsheet cell formatted as 2024年3月 holds
    the date 2024-03-01)."""
    value = _norm(cell)
    first_day = re.fullmatch(r"([0-9]{4})[-/.]([0-9]{1,2})[-/.]0?1(?:00:00(?::00)?)?", value)
    if first_day:
        value = f"{first_day.group(1)}-{first_day.group(2)}"
    match = re.fullmatch(r"([0-9]{4})(?:[-/.年]([0-9]{1,2})月?|([0-9]{2}))", value)
    if not match or not 1 <= int(match.group(2) or match.group(3)) <= 12:
        raise CellError("must be a month like 2024-03 (or 2024/3, 2024年3月, 202403)")
    return f"{match.group(1)}-{int(match.group(2) or match.group(3)):02d}"


_OFFSET = re.compile(r"([Zz]|[+-][0-9]{2}:[0-9]{2})$")


def timestamp(cell: str) -> str:
    """RFC 3339 with offset is kept; a local time or a bare date is Asia/Shanghai (+08:00)."""
    value = unicodedata.normalize("NFKC", cell).strip()
    if _OFFSET.search(value):
        return value  # full validation happens in schemas
    match = re.fullmatch(
        r"([0-9]{4})[-/.年]([0-9]{1,2})[-/.月]([0-9]{1,2})日?(?:[ T]+([0-9]{1,2})[:时]([0-9]{2})(?:[:分]([0-9]{2})秒?)?)?",
        value)
    if not match:
        raise CellError("must be a date/time like 2024-03-05 10:12 (Beijing time) or RFC 3339 with offset")
    year, month, day, hour, minute, second = match.groups()
    day_text = _real_date(year, month, day)
    if hour is None:
        return f"{day_text}T00:00:00+08:00"
    if int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
        raise CellError("is not a real time of day")
    return f"{day_text}T{int(hour):02d}:{minute}:{second or '00'}+08:00"


def yuan_to_fen(cell: str) -> int:
    """Exact: Decimal, at most 2 decimals; "1,234.50", "¥12", "12元" are fine."""
    value = _norm(cell).replace(",", "").replace("¥", "").replace("￥", "").removesuffix("元")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CellError("must be an amount in yuan like 1234.50") from None
    if not amount.is_finite():
        raise CellError("must be an amount in yuan like 1234.50")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise CellError("must have at most 2 decimals (fen)")
    return int(fen)


def id_number(cell: str) -> str:
    value = cell.strip().lstrip("'\t").strip()
    if re.fullmatch(r"[0-9.]+[eE][+]?[0-9]+", value):
        raise CellError("was turned into a number by Excel (digits lost): format the column as text "
                        "and export again")
    return value


def certificate_to_id(cell: str) -> str:
    """A disability certificate number is the holder's ID number + 2 digits (category, grade)."""
    value = id_number(cell)
    return value[:18] if len(value) == 20 else value


def choice(labels: dict[str, str], allowed: tuple[str, ...]) -> Callable[[str], str]:
    table = {_norm(k): v for k, v in labels.items()} | {_norm(v): v for v in allowed}

    def convert(cell: str) -> str:
        key = _norm(cell)
        if key in table:
            return table[key]
        return cell.strip()  # unknown: validation names the allowed values

    return convert


def hazard_list(cell: str) -> list[str]:
    convert = choice(HAZARD_LABELS, enums.HAZARDS)
    value = cell.strip()
    if _norm(value) in {"", "无", "none", "-", "/"}:
        return []
    return [convert(part) for part in re.split(r"[;,，；、|/\s]+", value) if part]


# ---- vocabularies --------------------------------------------------------------------------------------
CATEGORY_LABELS = {"视力": "visual", "视力残疾": "visual", "听力": "hearing", "听力残疾": "hearing",
                   "言语": "speech", "言语残疾": "speech", "肢体": "physical", "肢体残疾": "physical",
                   "智力": "intellectual", "智力残疾": "intellectual", "精神": "mental", "精神残疾": "mental",
                   "多重": "multiple", "多重残疾": "multiple"}
STATUS_LABELS = {"正常": "active", "在册": "active", "有效": "active", "注销": "cancelled", "迁出": "cancelled",
                 "死亡": "deceased", "去世": "deceased", "亡故": "deceased"}
VISIT_LABELS = {"入户走访": "home_visit", "入户": "home_visit", "走访": "home_visit",
                "村级康复": "rehab_in_village", "社区康复": "rehab_in_village", "村康复": "rehab_in_village",
                "家庭医生": "family_doctor", "家庭医生签约": "family_doctor", "评估": "assessment",
                "评定": "assessment"}
HAZARD_LABELS = {"独居无人照料": "living_alone_no_caregiver", "独居": "living_alone_no_caregiver",
                 "危房": "unsafe_housing", "住房不安全": "unsafe_housing", "精神危机": "mental_health_crisis",
                 "精神疾病发作": "mental_health_crisis", "虐待或忽视": "abuse_or_neglect", "虐待": "abuse_or_neglect",
                 "忽视": "abuse_or_neglect", "医疗急症": "medical_emergency", "急症": "medical_emergency"}
PROGRAM_LABELS = {"生活补贴": "living_subsidy", "困难残疾人生活补贴": "living_subsidy",
                  "护理补贴": "nursing_subsidy", "重度残疾人护理补贴": "nursing_subsidy",
                  "医疗保险补贴": "medical_insurance_subsidy", "医保补贴": "medical_insurance_subsidy",
                  "养老保险补贴": "pension_insurance_subsidy",
                  "灵活就业养老保险补贴": "self_employed_pension_subsidy",
                  "个体养老保险补贴": "self_employed_pension_subsidy",
                  "意外伤害保险": "accident_insurance", "意外险": "accident_insurance",
                  "康复补贴": "rehab_subsidy", "康复救助": "rehab_subsidy",
                  "教育资助": "education_aid", "助学": "education_aid"}
NEED_LABELS = {"就业": "employment", "辅具": "assistive_device", "辅助器具": "assistive_device",
               "康复": "rehabilitation", "教育": "education", "无障碍改造": "accessibility_modification",
               "照护": "care", "托养": "care"}
SERVICE_LABELS = {"辅具适配": "assistive_device_fitting", "孤独症儿童康复": "autism_child_rehab",
                  "康复服务": "rehab_service", "职业培训": "vocational_training",
                  "职业技能培训": "vocational_training", "无障碍改造": "accessibility_modification",
                  "精神障碍安置": "mental_health_settlement", "精神残疾人安置": "mental_health_settlement",
                  "网上病房": "online_ward", "在线病房": "online_ward", "团体辅导": "group_counseling",
                  "小组辅导": "group_counseling", "教育支持": "education_support"}
PLACEMENT_LABELS = {"按比例就业": "proportional", "按比例安排就业": "proportional", "集中就业": "centralized",
                    "集中安置": "centralized", "自主创业": "self_employed", "个体就业": "self_employed",
                    "自主就业": "self_employed", "辅助性就业": "sheltered", "公益性岗位": "public_welfare",
                    "灵活就业": "flexible"}
TYPE_LABELS = {"残疾人登记": "person.registered", "信息变更": "person.profile_changed",
               "状态变更": "person.status_changed", "走访": "visit.completed", "补贴发放": "payment.disbursed",
               "补贴冲正": "payment.reversed", "需求登记": "need.registered", "服务": "service.delivered",
               "就业安置": "job.placed", "岗位发布": "job.posted"}


# ---- columns and layouts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    field: str  # event field path it fills, e.g. "payload.amount_fen"
    headers: tuple[str, ...]  # accepted headers; the first is the documented one
    convert: Callable[[str], Any] = text
    required: bool = False  # a layout needs this column (auto-detection keys on these)

    def matches(self, header: str) -> bool:
        return normalise_header(header) in {normalise_header(h) for h in self.headers}


def normalise_header(header: str) -> str:
    """NFKC (full-width brackets), no blanks, no "*" required-markers, lower case."""
    return _norm(header).replace("*", "").lstrip("\ufeff")


ENVELOPE_COLUMNS: tuple[Column, ...] = (
    Column("event_id", ("事件编号", "事件ID", "业务编号", "流水号", "event_id"), required=True),
    Column("id_number", ("身份证号", "身份证号码", "公民身份号码", "证件号码", "id_number"), id_number),
    # Virtual field: becomes id_number when the row has no 身份证号 (and must agree with it otherwise).
    Column("certificate_no", ("残疾证号", "残疾证号码", "certificate_no"), certificate_to_id),
    Column("person_id", ("人员编号", "人员ID", "person_id")),
    Column("occurred_at", ("发生时间", "发生日期", "发放时间", "发放日期", "走访时间", "走访日期", "登记时间",
                           "登记日期", "服务时间", "服务日期", "就业时间", "安置日期", "发布时间", "发布日期",
                           "变更时间", "occurred_at"), timestamp, True),
    Column("town", ("镇街", "镇(街道)", "镇街道", "乡镇(街道)", "乡镇街道", "镇/街道", "街道", "town"), text, True),
    Column("village", ("村社区", "村(社区)", "村/社区", "社区", "village")),
    Column("source", ("来源", "数据来源", "来源系统", "source")),
    Column("version", ("版本", "version"), integer),
)
TYPE_COLUMN = Column("type", ("事件类型", "type"), choice(TYPE_LABELS, enums.EVENT_TYPES))


def _profile(required: bool) -> tuple[Column, ...]:
    return (
        Column("payload.category", ("残疾类别", "残疾类型", "category"),
               choice(CATEGORY_LABELS, enums.CATEGORIES), required),
        Column("payload.grade", ("残疾等级", "等级", "grade"), grade, required),
        Column("payload.hardship", ("是否困难", "困难家庭", "低收入家庭", "困难", "hardship"), boolean, required),
        Column("payload.certificate_expires", ("证件有效期", "有效期至", "证件到期日期", "残疾证有效期",
                                               "certificate_expires"), date_text, required),
    )


NEED_ID = Column("payload.need_id", ("需求编号", "need_id"))
LAYOUTS: dict[str, tuple[Column, ...]] = {
    "person.registered": (*_profile(True),
                          Column("payload.birth_date", ("出生日期", "birth_date"), date_text, True)),
    "person.profile_changed": _profile(False),
    "person.status_changed": (
        Column("payload.status", ("状态", "人员状态", "status"), choice(STATUS_LABELS, enums.STATUSES), True),
        Column("payload.effective_date", ("生效日期", "变更日期", "effective_date"), date_text, True),
    ),
    "visit.completed": (
        Column("payload.visit_kind", ("走访类型", "走访方式", "visit_kind"),
               choice(VISIT_LABELS, enums.VISIT_KINDS), True),
        Column("payload.visitor", ("走访人", "走访人员", "visitor"), text, True),
        Column("payload.hazards", ("风险隐患", "隐患", "hazards"), hazard_list),
        Column("payload.duration_minutes", ("时长(分钟)", "走访时长(分钟)", "duration_minutes"), integer),
    ),
    "payment.disbursed": (
        Column("payload.program", ("补贴项目", "补贴类型", "项目", "program"),
               choice(PROGRAM_LABELS, enums.PROGRAMS), True),
        Column("payload.amount_fen", ("金额(元)", "发放金额(元)", "金额", "amount_yuan"), yuan_to_fen),
        Column("payload.amount_fen", ("金额(分)", "amount_fen"), integer),
        Column("payload.period", ("所属期", "所属月份", "发放月份", "期间", "period"), period, True),
    ),
    "payment.reversed": (
        Column("payload.reverses", ("冲正事件编号", "被冲正事件编号", "原事件编号", "reverses"), text, True),
        Column("payload.reason", ("冲正原因", "原因", "reason"), text, True),
    ),
    "need.registered": (
        Column("payload.need_id", ("需求编号", "need_id"), text, True),
        Column("payload.need", ("需求类型", "需求", "need"), choice(NEED_LABELS, enums.NEEDS), True),
    ),
    "service.delivered": (
        Column("payload.service", ("服务项目", "服务类型", "service"), choice(SERVICE_LABELS, enums.SERVICES), True),
        NEED_ID,
    ),
    "job.placed": (
        Column("payload.employer", ("用人单位", "就业单位", "单位名称", "employer"), text, True),
        Column("payload.placement_kind", ("安置方式", "就业方式", "placement_kind"),
               choice(PLACEMENT_LABELS, enums.PLACEMENT_KINDS), True),
        NEED_ID,
    ),
    "job.posted": (
        Column("payload.employer", ("用人单位", "招聘单位", "单位名称", "employer"), text, True),
        Column("payload.positions", ("岗位数", "岗位数量", "招聘人数", "positions"), integer, True),
    ),
}
LAYOUT_NAMES: tuple[str, ...] = tuple(LAYOUTS)
#: Fields whose absence as a column is fine because the event may omit them.
OPTIONAL_PAYLOAD = {"payload.hazards": [], "payload.need_id": None}
