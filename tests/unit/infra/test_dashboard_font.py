"""The dashboard's Chinese font subset, built at set-up from Debian's WenQuanYi Micro Hei."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from infra import dashboard_font
from projections.api.dashboard import FONT_FAMILY, served_font
from projections.api.report import report_lines


def test_gb2312_level1_is_the_3755_common_hanzi() -> None:
    chars = dashboard_font.gb2312_level1()
    assert len(chars) == len(set(chars)) == 3755
    assert chars[0] == "啊" and chars[-1] == "座"


def test_characters_cover_every_label_the_dashboard_shows() -> None:
    text = set(dashboard_font.characters())
    shown = "".join(line.label_zh for line in report_lines()) + "残疾人服务数据看板锦屏街道萧王庙街道莼湖镇裘村镇松岙镇"
    assert set(shown) <= text
    assert set("0123456789,.%（）—") <= text
    assert "岙" not in dashboard_font.gb2312_level1()  # a town name outside GB 2312 level 1, found in the files


@pytest.fixture(scope="module")
def source() -> Path:
    found = dashboard_font.source_font()
    if found is None:
        pytest.fail("no CJK source font: `make font` (or apt-get install fonts-wqy-microhei) installs it")
    return found


def test_ensure_font_builds_a_small_woff_with_the_glyphs_once(tmp_path: Path, source: Path) -> None:
    log = io.StringIO()
    built = dashboard_font.ensure_font(tmp_path, install=False, out=log)
    assert built is not None and built.parent == tmp_path and built.name.startswith(f"{FONT_FAMILY}-")
    data = built.read_bytes()
    assert data[:4] == b"wOFF" and 100_000 < len(data) < 1_000_000, len(data)
    cmap = TTFont(io.BytesIO(data)).getBestCmap()
    for char in "残疾人服务数据看板岙A1":
        assert ord(char) in cmap, char
    assert ord("龘") not in cmap  # rare characters are left to the system's fonts
    assert served_font(tmp_path) == built
    mtime = built.stat().st_mtime_ns
    assert dashboard_font.ensure_font(tmp_path, install=False, out=log) == built  # nothing to do
    assert built.stat().st_mtime_ns == mtime and "KB" in log.getvalue()


def test_without_a_source_font_the_set_up_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_font, "SOURCES", (tmp_path / "none.ttc",))
    log = io.StringIO()
    assert dashboard_font.ensure_font(tmp_path / "fonts", install=False, out=log) is None
    assert "system's fonts" in log.getvalue()
    assert served_font(tmp_path / "fonts") is None
