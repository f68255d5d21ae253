from __future__ import annotations

import io
from pathlib import Path

import pytest

from careledger.settings import Settings
from processors.privacy import unseal_batch
from producers.csv_import import HeaderError, bind_header, detect_type, run_import_csv
from producers.csv_layouts import LAYOUTS, CellError, period, timestamp, yuan_to_fen
from producers.keystore import KeyStore
from tests.unit.producers.conftest import FakeProducer

ID = "110101199003071233"
ID2 = "11010519491231002X"
COMMON = "事件编号,身份证号,发生时间,镇(街道),村(社区)"

# type -> (payload headers, one row of payload cells, expected payload)
LAYOUT_EXAMPLES = {
    "person.registered": ("残疾类别,残疾等级,出生日期,是否困难,证件有效期", "肢体,二级,1960/2/29,是,2028-12-31",
                          {"category": "physical", "grade": 2, "birth_date": "1960-02-29", "hardship": True,
                           "certificate_expires": "2028-12-31"}),
    "person.profile_changed": ("残疾等级,是否困难", "1,", {"grade": 1}),
    "person.status_changed": ("状态,生效日期", "死亡,2024年3月1日", {"status": "deceased",
                                                            "effective_date": "2024-03-01"}),
    "visit.completed": ("走访类型,走访人,风险隐患,时长(分钟)", "入户走访,王医生,危房、独居,45",
                        {"visit_kind": "home_visit", "visitor": "王医生",
                         "hazards": ["unsafe_housing", "living_alone_no_caregiver"], "duration_minutes": 45}),
    "payment.disbursed": ("补贴项目,金额(元),所属期", "护理补贴,\"1,234.56\",2024年3月",
                          {"program": "nursing_subsidy", "amount_fen": 123456, "period": "2024-03"}),
    "payment.reversed": ("冲正事件编号,冲正原因", "ev-0,重复发放", {"reverses": "ev-0", "reason": "重复发放"}),
    "need.registered": ("需求编号,需求类型", "n-1,辅具", {"need_id": "n-1", "need": "assistive_device"}),
    "service.delivered": ("服务项目,需求编号", "辅具适配,n-1",
                          {"service": "assistive_device_fitting", "need_id": "n-1"}),
    "job.placed": ("用人单位,安置方式", "某某公司,按比例就业",
                   {"employer": "某某公司", "placement_kind": "proportional", "need_id": None}),
    "job.posted": ("用人单位,岗位数", "某某公司,3", {"employer": "某某公司", "positions": 3}),
}


def run(settings: Settings, tmp_path: Path, text: str, encoding: str = "utf-8-sig",
        **kw: object) -> tuple[int, str, str]:
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode(encoding))
    out, err = io.StringIO(), io.StringIO()
    code = run_import_csv(settings, str(path), out=out, err=err, progress=False, encoding=encoding, **kw)
    return code, out.getvalue(), err.getvalue()


def test_every_type_has_a_layout_example() -> None:
    assert set(LAYOUT_EXAMPLES) == set(LAYOUTS)


@pytest.mark.parametrize("event_type", sorted(LAYOUT_EXAMPLES))
def test_layouts(event_type: str, settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    headers, cells, payload = LAYOUT_EXAMPLES[event_type]
    person = "" if event_type == "job.posted" else ID
    text = f"序号,姓名,{COMMON},{headers}\n1,张三,c-1,{person},2024-03-05 10:12,锦屏街道,东村,{cells}\n"
    forced = event_type if event_type == "person.profile_changed" else None
    code, out, err = run(settings, tmp_path, text, event_type=forced)
    assert code == 0, out + err
    assert "ignored columns: 序号, 姓名" in out
    [(key, published)] = patched_publisher.messages("careledger.events")
    [published] = unseal_batch([published], KeyStore.from_settings(settings))  # sealed on the wire
    assert published["type"] == event_type
    assert published["occurred_at"] == "2024-03-05T10:12:00+08:00"
    assert published["town"] == "锦屏街道" and published["village"] == "东村"
    for name, value in payload.items():
        assert published["payload"][name] == value
    if event_type != "job.posted":
        assert key == published["person_id"] and published["person_id"].startswith("p")
    assert "张三" not in repr(patched_publisher.sent) and ID not in repr(patched_publisher.sent)


def test_english_headers_and_bom(settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    text = ("\ufeffevent_id,person_id,occurred_at,town,village,program,amount_yuan,period\n"
            "e1,p1,2024-03-05T10:12:00+08:00,岳林街道,,living_subsidy,0.1,2024-03\n")
    code, out, _ = run(settings, tmp_path, text, encoding="utf-8")
    assert code == 0, out
    [(_, e)] = patched_publisher.messages("careledger.events")
    assert e["payload"]["amount_fen"] == 10 and e["village"] is None


def test_rejects_name_line_and_column(settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    text = (f"{COMMON},补贴项目,金额（元）,所属期\n"
            f"c1,{ID},2024-03-05,锦屏街道,东村,生活补贴,500,2024-03\n"
            f"c2,1.10101E+17,2024-03-05,锦屏街道,东村,生活补贴,500,2024-03\n"
            f"c3,{ID2},2024-03-05,锦屏街道,东村,不存在,100.123,2024-13\n"
            f"c4,{ID2},2024-03-05,锦屏街道,东村,生活补贴,-3,2024-03\n"
            f"c1,{ID},2024-03-05,锦屏街道,东村,生活补贴,500,2024-03\n")
    code, out, _ = run(settings, tmp_path, text)
    assert code == 2
    assert "accepted: 1" in out and "duplicates: 1" in out and "rejected: 3" in out
    assert 'line 3: column "身份证号" (id_number): was turned into a number by Excel' in out
    assert 'line 4: column "金额（元）" (payload.amount_fen): must have at most 2 decimals' in out
    assert 'line 4: column "所属期" (payload.period)' in out
    assert 'line 4: column "补贴项目" (payload.program): must be one of' in out
    assert 'line 5: column "金额（元）" (payload.amount_fen): must be an integer > 0' in out
    assert "line 3: column \"身份证号\" (person_id)" not in out
    dlq = patched_publisher.messages("careledger.events.dlq")
    assert [d["origin"]["line"] for _, d in dlq] == [3, 4, 5]
    assert all(ID2 not in repr(d) for _, d in dlq)


def test_mixed_file_with_type_column(settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    text = (f"事件类型,{COMMON},补贴项目,金额(元),所属期,用人单位,岗位数\n"
            f"补贴发放,c1,{ID},2024-03-05,锦屏街道,,生活补贴,5,2024-03,,\n"
            f"job.posted,c2,,2024-03-05,锦屏街道,,,,,某某公司,2\n"
            f"花钱,c3,{ID},2024-03-05,锦屏街道,,,,,,\n")
    code, out, _ = run(settings, tmp_path, text)
    assert code == 2 and "accepted: 2" in out and 'line 4: column "事件类型" (type): must be one of' in out


def test_gb18030(settings: Settings, tmp_path: Path, patched_publisher: FakeProducer) -> None:
    text = f"{COMMON},需求编号,需求类型\nc1,{ID},2024-03-05,锦屏街道,东村,n1,康复\n"
    code, out, _ = run(settings, tmp_path, text, encoding="gb18030")
    assert code == 0, out
    code, out, _ = run(settings, tmp_path, text.replace("c1", "c2"), encoding="utf-8")
    path = tmp_path / "in.csv"
    path.write_bytes(text.replace("c1", "c3").encode("gb18030"))
    out_io = io.StringIO()
    code = run_import_csv(settings, str(path), out=out_io, err=io.StringIO(), progress=False)
    assert code == 0, out_io.getvalue()  # detected (issue 16.2: this was "cannot tell the event type")
    assert "encoding: gb18030 (detected; --encoding to override)" in out_io.getvalue()


def test_header_errors(settings: Settings, tmp_path: Path) -> None:
    code, _, err = run(settings, tmp_path, "事件编号,发生时间,镇街\nc1,2024-03-05,T\n", dry_run=True)
    assert code == 2 and "cannot tell the event type" in err
    code, _, err = run(settings, tmp_path, "事件编号,发生时间,补贴项目,所属期\n", dry_run=True)
    assert code == 2 and "missing column(s): 镇街 (town)" in err and "身份证号" in err
    with pytest.raises(HeaderError, match="a second column for id_number"):
        bind_header(["事件编号", "身份证号", "身份证号码", "发生时间", "镇街", "需求编号", "需求类型"],
                    "need.registered")


def test_an_id_number_in_the_header_is_not_printed(settings: Settings, tmp_path: Path) -> None:
    """A header cell that names no column is listed as ignored: redacted, as it may be an ID number."""
    spaced = f"{ID[:6]} {ID[6:14]} {ID[14:]}"
    text = (f"事件编号,身份证号,发生时间,镇街,需求编号,需求类型,{ID},{spaced},备注\n"
            f"c1,{ID2},2024-03-05,溪口镇,n1,就业,,,\n")
    code, out, err = run(settings, tmp_path, text, dry_run=True)
    assert code == 0, out + err
    assert "ignored columns: [ID-REDACTED], [ID-REDACTED], 备注" in out
    assert ID[:6] not in out + err


def test_detection() -> None:
    assert detect_type(["事件编号", "用人单位", "岗位数"]) == "job.posted"
    assert detect_type(["事件编号", "用人单位", "安置方式"]) == "job.placed"
    assert detect_type(["事件类型", "x"]) is None


def test_certificate_number_gives_the_id(settings: Settings, tmp_path: Path,
                                         patched_publisher: FakeProducer) -> None:
    from producers.pseudonym import Pseudonymiser

    text = f"事件编号,残疾证号,发生时间,镇街,需求编号,需求类型\nc1,{ID}42,2024-03-05,溪口镇,n1,就业\n"
    assert run(settings, tmp_path, text)[0] == 0
    [(_, e)] = patched_publisher.messages("careledger.events")
    assert e["person_id"] == Pseudonymiser.from_settings(settings).person_id(ID)
    both = (f"事件编号,身份证号,残疾证号,发生时间,镇街,需求编号,需求类型\n"
            f"c2,,{ID2}11,2024-03-05,溪口镇,n1,就业\nc3,{ID},{ID}11,2024-03-05,溪口镇,n1,就业\n"
            f"c4,{ID},{ID2}11,2024-03-05,溪口镇,n1,就业\n")
    code, out, _ = run(settings, tmp_path, both)
    assert code == 2 and "accepted: 2" in out
    assert 'line 4: column "残疾证号" (id_number): does not belong to the ID number in column "身份证号"' in out
    assert ID not in out and ID2 not in out


def test_cell_converters() -> None:
    assert yuan_to_fen("0.29") == 29 and yuan_to_fen("¥1,000.10元") == 100010 and yuan_to_fen("19.99") == 1999
    for bad in ("1.005", "abc", "NaN", "Infinity"):
        with pytest.raises(CellError):
            yuan_to_fen(bad)
    assert period("202403") == "2024-03" and period("2024/3") == "2024-03"
    with pytest.raises(CellError):
        period("2024-00")
    assert timestamp("2024-03-05") == "2024-03-05T00:00:00+08:00"
    assert timestamp("2024-03-05T10:12:00Z") == "2024-03-05T10:12:00Z"
    with pytest.raises(CellError):
        timestamp("2024-02-30 10:00")
