"""Property-based fuzzing of ``careledger import-csv`` (hypothesis) on generated CSV bytes: real
layouts' headers with arbitrary cells, a UTF-8 BOM or not, the wrong delimiter, GB18030 bytes,
formula ("CSV injection") cells, quotes and line breaks inside cells, random bytes.

Run as a dry run (validation only, no Kafka).  Properties: it never raises, the exit code is 0, 1
or 2 as documented, every rejected row is reported with a reason naming a line, and the counts add up.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careledger.settings import Settings
from producers.csv_import import run_import_csv
from tests.support.reliability import record

EXAMPLES = 250

HEADERS = [
    ["事件编号", "人员编号", "事件类型", "发生时间", "镇街", "村社区", "补贴项目", "金额(元)", "所属期"],
    ["事件编号", "身份证号", "发生日期", "镇街", "补贴项目", "金额(分)", "所属期"],
    ["事件编号", "人员编号", "走访时间", "镇街", "走访类型", "走访人", "风险隐患"],
    ["事件编号", "人员编号", "登记时间", "镇街", "残疾类别", "残疾等级", "是否困难", "出生日期", "证件有效期"],
    ["event_id", "person_id", "type", "occurred_at", "town", "employer", "positions"],
    ["序号", "姓名", "备注"],
]
CELLS = st.text(max_size=25) | st.sampled_from([
    "=cmd|' /C calc'!A0", "+1+2", "-3", "@SUM(A1)", "\t=1", "2024-03-05", "2024-03-05T10:12:00+08:00",
    "2024-02-30", "living_subsidy", "最低生活保障", "500", "-500", "1e400", "payment.disbursed", "110101199003071233",
    "锦屏街道", "是", "否", "home_visit", "unsafe_housing;abuse_or_neglect", "a,b", 'say "hi"', "line\nbreak", "",
])


VALID_ROW = ["csv-{n}", "p-{n}", "payment.disbursed", "2024-03-05T10:12:00+08:00", "锦屏街道", "东村", "living_subsidy",
             "500", "2024-03"]


@st.composite
def near_valid_rows(draw: st.DrawFn) -> list[str]:
    """A valid row of the first layout with 0-2 cells replaced (so some rows are accepted)."""
    n = draw(st.integers(min_value=0, max_value=10**6))
    row = [cell.format(n=n) for cell in VALID_ROW]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        row[draw(st.integers(min_value=0, max_value=len(row) - 1))] = draw(CELLS)
    return row


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str]:
    if draw(st.integers(min_value=0, max_value=3)) == 0:  # a quarter: nearly valid, right delimiter
        header = HEADERS[0]
        rows = draw(st.lists(near_valid_rows(), max_size=8))
        write_delimiter = read_delimiter = ","
        encodings = ["utf-8", "utf-8-bom"]
    else:
        header = draw(st.sampled_from(HEADERS))
        rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 2), max_size=8))
        write_delimiter = draw(st.sampled_from([",", ";", "\t"]))
        read_delimiter = draw(st.sampled_from([",", ",", ";", "\t"]))
        encodings = ["utf-8", "utf-8-bom", "gb18030", "garbled"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=write_delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    encoding = draw(st.sampled_from(encodings))
    if encoding == "utf-8-bom":
        data = b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    elif encoding == "gb18030":
        data = text.encode("gb18030", "replace")
    elif encoding == "garbled":
        data = text.encode("utf-8", "surrogatepass") + draw(st.binary(max_size=40))
    else:
        data = text.encode("utf-8", "surrogatepass")
    return data, read_delimiter


def test_import_csv_on_generated_files_never_crashes_and_explains_every_reject() -> None:
    seen = {"examples": 0, "files_rejected_by_header": 0, "rows_accepted": 0, "rows_rejected": 0}
    with tempfile.TemporaryDirectory() as tmp:
        base = dataclasses.replace(Settings.from_env(), home=Path(tmp) / "home", kafka_bootstrap="127.0.0.1:1")

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(csv_files())
        def check(sample: tuple[bytes, str]) -> None:
            data, delimiter = sample
            seen["examples"] += 1
            path = Path(tmp) / "in.csv"
            path.write_bytes(data)
            out, err = io.StringIO(), io.StringIO()
            code = run_import_csv(base, str(path), delimiter=delimiter, dry_run=True, progress=False,
                                  out=out, err=err)
            text = out.getvalue()
            assert code in (0, 1, 2), (code, text, err.getvalue())
            if "header:" in err.getvalue() or code == 1:
                seen["files_rejected_by_header"] += 1
                assert err.getvalue().strip(), "a refused file without a reason"
                return
            accepted = int(re.search(r"accepted: (\d+)", text).group(1))
            rejected = int(re.search(r"rejected: (\d+)", text).group(1))
            seen["rows_accepted"] += accepted
            seen["rows_rejected"] += rejected
            assert (code == 2) == (rejected > 0), text
            reject_lines = [ln for ln in text.splitlines() if re.match(r"\s*line \d+: ", ln)]
            assert len(reject_lines) >= min(rejected, 1), text
            assert all(ln.split(":", 1)[1].strip() for ln in reject_lines), text
            assert "110101199003071233" not in text + err.getvalue(), "a raw ID number in the output"

        check()
    record("fuzz", "import-csv: generated CSV (layouts, BOM, wrong delimiter, GB18030, formula cells, junk)",
           claim="{examples} files, {rows_accepted} rows accepted, {rows_rejected} rows rejected with a line and "
                 "a reason, {files_rejected_by_header} files refused by their header with a reason, 0 crashes",
           **seen)
    assert seen["examples"] >= EXAMPLES // 2
