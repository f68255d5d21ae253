"""The dashboard's Chinese font, built at set-up (``make up`` / ``make font``) and served with the page.

A phone or a desk without a CJK font shows Chinese as empty boxes, so the dashboard brings its own:
a subset of WenQuanYi Micro Hei (Debian's ``fonts-wqy-microhei``, Apache-2.0 / GPLv3 with the font
exception) holding the 3,755 level-1 hanzi of GB 2312 (the common characters), every character of
the dashboard's own files, report definition, targets and the district's town and village names,
and ASCII.  It is written as WOFF (zlib, no extra codec) under ``projections/api/static/fonts/``
with its content hash in the name, so the dashboard can serve it with a one-year immutable cache;
characters outside the subset fall back to the CSS font stack.  Nothing binary is kept in git.

Run ``python -m infra.dashboard_font``: installs the Debian package when no source font is found
(root only; ``infra.packages``), builds the subset when missing or out of date, and never fails the
set-up: without a source font it says so and the dashboard falls back to the system's fonts.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from fontTools import subset
from fontTools.ttLib import TTFont

from infra.packages import ensure_debian_packages
from projections.api.dashboard import FONT_DIR, FONT_FAMILY, STATIC_DIR

REPO = Path(__file__).resolve().parent.parent
DEBIAN_PACKAGE = "fonts-wqy-microhei"
SOURCES = (  # first found wins; a .ttc is a collection: font 0 is the proportional face
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
TEXT_FILES = (  # the characters the dashboard shows, whatever GB 2312 level 1 lacks
    *sorted(STATIC_DIR.glob("*.html")), *sorted(STATIC_DIR.glob("**/*.js")),
    REPO / "projections" / "api" / "report.csv", REPO / "careledger" / "targets.csv",
    REPO / "producers" / "simulate" / "geo.py",
)
# every visible ASCII character and the CJK punctuation / full-width forms the page uses
EXTRA = "".join(chr(c) for c in range(0x20, 0x7F)) + "、。，：；？！（）《》“”‘’—…·～＊％／－"


def gb2312_level1() -> str:
    """The 3,755 common hanzi (GB 2312 rows 16-55), decoded from the codec itself."""
    chars = []
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            try:
                chars.append(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:  # row 55 ends at cell 0xF9
                continue
    return "".join(chars)


def characters(files: Iterable[Path] = TEXT_FILES) -> str:
    found = set(gb2312_level1()) | set(EXTRA)
    for path in files:
        if path.is_file():
            found |= {c for c in path.read_text(encoding="utf-8") if ord(c) >= 0x2E80}
    return "".join(sorted(found))


def source_font(sources: Iterable[Path] | None = None) -> Path | None:
    return next((path for path in (SOURCES if sources is None else sources) if path.is_file()), None)


def build(source: Path, text: str) -> bytes:
    """The WOFF subset of ``source`` holding ``text`` (no hinting: smaller, and screens do without)."""
    logging.getLogger("fontTools").setLevel(logging.ERROR)  # "FFTM NOT subset" and the like
    font = TTFont(str(source), fontNumber=0, lazy=False)
    options = subset.Options()
    options.flavor = "woff"
    options.hinting = False
    options.desubroutinize = True
    options.name_IDs = ["*"]  # keep the copyright and licence names
    options.layout_features = ["*"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    out = io.BytesIO()
    font.flavor = "woff"
    font.save(out)
    return out.getvalue()


def ensure_font(font_dir: Path = FONT_DIR, install: bool = True, out: TextIO = sys.stderr) -> Path | None:
    """Build the subset if it is missing or its inputs changed; return its path (None: no source font)."""
    source = source_font()
    if source is None and install:
        try:
            ensure_debian_packages([DEBIAN_PACKAGE])
        except Exception as exc:  # noqa: BLE001 - never fail the set-up over a font
            print(f"dashboard font: {exc}; Chinese will use the system's fonts", file=out)
        source = source_font()
    if source is None:
        print(f"dashboard font: no CJK source font ({DEBIAN_PACKAGE} is not installed); "
              "Chinese will use the system's fonts", file=out)
        return None
    text = characters()
    key = hashlib.sha256(source.read_bytes() + text.encode("utf-8")).hexdigest()[:12]
    target = font_dir / f"{FONT_FAMILY}-{key}.woff"
    if target.is_file():
        return target
    font_dir.mkdir(parents=True, exist_ok=True)
    data = build(source, text)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    for old in font_dir.glob(f"{FONT_FAMILY}-*.woff"):
        if old != target:
            old.unlink()
    print(f"dashboard font: {target.name} ({len(data) // 1024} KB, {len(text)} characters of {source.name})",
          file=out)
    return target


if __name__ == "__main__":
    ensure_font()
