"""Spreadsheets as they come (issue 16.2): CSV in any encoding Excel writes, and .xlsx workbooks,
give the same events; the encoding or sheet read is said; bad workbook rows name sheet, row and
column."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from careledger.settings import Settings
from processors.privacy import unseal_batch
from producers.csv_import import run_import_csv
from producers.keystore import KeyStore
from producers.spreadsheet import cell_text, detect_encoding, open_table
from tests.unit.producers.conftest import FakeProducer

ID = "110101199003071233"
ID2 = "11010519491231002X"
HEADER = ["序号", "事件类型", "事件编号", "身份证号", "发生时间", "镇(街道)", "村(社区)", "残疾类别", "残疾等级",
          "出生日期", "是否困难", "证件有效期", "补贴项目", "金额(元)", "所属期", "走访类型", "走访人", "风险隐患",
          "用人单位", "岗位数"]
# one row per event; typed values as a workbook holds them (the CSV gets their text)
ROWS: list[list[Any]] = [
    [1, "残疾人登记", "x-1", ID, datetime(2024, 3, 5, 10, 12), "锦屏街道", "东村", "肢体", 2, date(1960, 2, 29),
     True, date(2028, 12, 31), None, None, None, None, None, None, None, None],
    [2, "补贴发放", "x-2", ID, datetime(2024, 3, 6), "锦屏街道", "东村", None, None, None, None, None, "护理补贴",
     120.5, datetime(2024, 3, 1), None, None, None, None, None],
    [3, "补贴发放", "x-3", ID2, datetime(2024, 4, 6, 9, 0, 30), "莼湖镇", "桐照村", None, None, None, None, None,
     "生活补贴", 1234.56, "2024年4月", None, None, None, None, None],
    [4, "走访", "x-4", ID2, datetime(2024, 4, 7, 15, 30), "莼湖镇", "桐照村", None, None, None, None, None, None,
     None, None, "入户走访", "王医生", "危房、独居", None, None],
    [5, "岗位发布", "x-5", None, date(2024, 5, 1), "溪口镇", None, None, None, None, None, None, None, None, None,
     None, None, None, "雪窦山景区管理处", 3],
]
BAD_ROW: list[Any] = [6, "补贴发放", "x-6", ID, datetime(2024, 3, 6), "锦屏街道", "东村", None, None, None, None, None,
                      "护理补贴", 120.555, "2024-03", None, None, None, None, None]


def _csv_text(rows: list[list[Any]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows([cell_text(v) if not isinstance(v, datetime) else v.strftime("%Y/%m/%d %H:%M:%S")
                      for v in row] for row in rows)
    return buffer.getvalue()


def _xlsx(path: Path, rows: list[list[Any]], sheet: str = "补贴", extra_sheet: bool = False) -> Path:
    workbook = openpyxl.Workbook()
    if extra_sheet:
        notes = workbook.active
        notes.title = "说明"
        notes.append(["本表由区残联导出"])
        worksheet = workbook.create_sheet(sheet)
        workbook.active = 1
    else:
        worksheet = workbook.active
        worksheet.title = sheet
    worksheet.append(HEADER)
    for row in rows:
        worksheet.append(row)
    for row in worksheet.iter_rows(min_row=2, min_col=4, max_col=4):  # ID numbers as text, as they must be
        for cell in row:
            cell.number_format = "@"
    workbook.save(path)
    return path


def _import(settings: Settings, path: Path, **kw: Any) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_import_csv(settings, str(path), out=out, err=err, progress=False, **kw)
    return code, out.getvalue() + err.getvalue()


def _events(settings: Settings, producer: FakeProducer) -> list[dict[str, Any]]:
    published = [event for _, event in producer.messages("careledger.events")]
    producer.sent.clear()
    return unseal_batch(published, KeyStore.from_settings(settings))  # type: ignore[return-value]


def test_gb18030_utf16_and_xlsx_give_the_same_events_as_the_utf8_csv(settings: Settings, tmp_path: Path,
                                                                        patched_publisher: FakeProducer) -> None:
    text = _csv_text(ROWS)
    files = {
        "utf-8": tmp_path / "utf8.csv",
        "utf-8-sig": tmp_path / "bom.csv",
        "gb18030": tmp_path / "gbk.csv",
        "utf-16": tmp_path / "unicode.txt",
    }
    files["utf-8"].write_bytes(text.encode("utf-8"))
    files["utf-8-sig"].write_bytes(text.encode("utf-8-sig"))
    files["gb18030"].write_bytes(text.encode("gb18030"))
    files["utf-16"].write_bytes(_csv_text(ROWS, "\t").encode("utf-16"))  # Excel's "Unicode text": tabs
    results = {}
    for encoding, path in files.items():
        code, out = _import(settings, path)
        assert code == 0, out
        assert f"encoding: {encoding} (detected; --encoding to override)" in out
        results[encoding] = _events(settings, patched_publisher)
    code, out = _import(settings, _xlsx(tmp_path / "book.xlsx", ROWS))
    assert code == 0, out
    assert 'workbook: sheet "补贴" (the active sheet; --sheet to choose)' in out
    results["xlsx"] = _events(settings, patched_publisher)

    reference = results["utf-8"]
    assert [e["event_id"] for e in reference] == ["x-1", "x-2", "x-3", "x-4", "x-5"]
    assert reference[1]["payload"] == {"program": "nursing_subsidy", "amount_fen": 12050, "period": "2024-03"}
    assert reference[0]["payload"]["birth_date"] == "1960-02-29" and reference[0]["payload"]["grade"] == 2
    assert reference[2]["occurred_at"] == "2024-04-06T09:00:30+08:00"
    for name, events in results.items():
        assert events == reference, name


def test_a_wrong_guess_is_overridden_with_encoding(settings: Settings, tmp_path: Path,
                                                   patched_publisher: FakeProducer) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(_csv_text(ROWS[:1]).encode("gb18030"))
    code, out = _import(settings, path, encoding="utf-8")  # forced wrong: the header cannot match
    assert code == 2 and "encoding: utf-8 (--encoding)" in out and "Traceback" not in out
    out.encode("utf-8")
    code, out = _import(settings, path, encoding="gb18030")
    assert code == 0 and "encoding: gb18030 (--encoding)" in out


def test_bad_workbook_rows_name_sheet_row_and_column(settings: Settings, tmp_path: Path,
                                                     patched_publisher: FakeProducer) -> None:
    book = _xlsx(tmp_path / "book.xlsx", [ROWS[1], BAD_ROW], sheet="三月", extra_sheet=True)
    code, out = _import(settings, book)
    assert code == 2, out
    assert 'workbook: sheet "三月" (the active sheet; --sheet to choose) (sheets: 说明, 三月)' in out
    assert 'sheet "三月" row 3: column N "金额(元)" (payload.amount_fen): must have at most 2 decimals' in out
    assert "accepted: 1" in out
    code, out = _import(settings, book, sheet="说明")
    assert code == 2 and "header:" in out and 'sheet "说明"' in out
    code, out = _import(settings, book, sheet="四月")
    assert code == 2 and "no sheet named '四月'; the workbook has: 说明, 三月" in out


def test_an_id_number_excel_turned_into_a_number_is_explained(settings: Settings, tmp_path: Path,
                                                              patched_publisher: FakeProducer) -> None:
    row = list(ROWS[1])
    row[3] = float(ID)  # what Excel does to a column not formatted as text
    code, out = _import(settings, _xlsx(tmp_path / "book.xlsx", [row]))
    assert code == 2 and "was turned into a number by Excel" in out and ID[:12] not in out


def test_detect_encoding() -> None:
    text = "事件编号,镇街\nc1,锦屏街道\n"
    assert detect_encoding(text.encode("utf-8"), True) == "utf-8"
    assert detect_encoding(codecs.BOM_UTF8 + text.encode(), True) == "utf-8-sig"
    assert detect_encoding(text.encode("gb18030"), True) == "gb18030"
    assert detect_encoding(text.encode("utf-16"), True) == "utf-16"
    assert detect_encoding(b"event_id,town\n", True) == "utf-8"
    cut = text.encode("utf-8")[:-9]  # a sample that ends inside a character
    assert detect_encoding(cut, False) == "utf-8"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_delimiter_is_read_from_the_header(delimiter: str) -> None:
    table = open_table(io.BytesIO(_csv_text(ROWS[:1], delimiter).encode()))
    header = next(table.rows)[1]
    assert header == HEADER
    shown = {"\t": "tab"}.get(delimiter, delimiter)
    assert table.description.endswith(f"delimiter: {shown}")


def test_cell_text() -> None:
    assert [cell_text(v) for v in (None, True, 500.0, 120.5, 3, datetime(2024, 3, 5), datetime(2024, 3, 5, 10, 12),
                                   date(2024, 3, 1), "文本")] == \
        ["", "true", "500", "120.5", "3", "2024-03-05", "2024-03-05 10:12:00", "2024-03-01", "文本"]
    assert "e+17" in cell_text(float(ID))


def test_undecodable_header_bytes_never_crash_the_summary(settings: Settings, tmp_path: Path,
                                                          patched_publisher: FakeProducer) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes("事件编号,人员编号,发生时间,镇街,补贴项目,金额(元),所属期,".encode() + b"\xff\xfe\n"
                     + "c1,p1,2024-03-05,锦屏街道,生活补贴,500,2024-03,x\n".encode())
    code, out = _import(settings, path, encoding="utf-8")
    out.encode("utf-8")
    assert code == 0 and "ignored columns: \ufffd\ufffd" in out, out
