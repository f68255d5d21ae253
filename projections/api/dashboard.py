"""The dashboard: one HTML page and its static assets, served by the read API (no build step).

``GET /`` is ``static/index.html`` with the published layout of the half-year report filled in
(which columns the federation prints for each line, and its notes: from ``report.csv``, the
packaged report definition); ``GET /static/{path}`` serves the files under ``static/``.  Both are
public (policy.py): the page holds no data.  The browser asks the API for the figures itself:
aggregates anonymously (or with the user's token), person-level sections (alerts inbox, need
warnings) with the bearer token the user enters, kept in the browser's localStorage.

Included by ``projections/api/app.py`` without a prefix (the policy matrix is keyed by full paths).
"""

from __future__ import annotations

import csv
import json
import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from projections.api.report import REPORT_CSV

STATIC_DIR = Path(__file__).resolve().parent / "static"
LAYOUT_MARK = "__REPORT_LAYOUT__"
# The page is re-read when its file changes (handy while editing the dashboard); assets are
# revalidated by the browser (ETag / Last-Modified from FileResponse).
NO_CACHE = {"Cache-Control": "no-cache"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8", ".json": "application/json",
         ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2"}

router = APIRouter(include_in_schema=False)


def report_layout(path: Path = REPORT_CSV) -> dict[str, dict[str, object]]:
    """Per report line (metric): the columns the federation publishes and its note.

    ``report.csv`` carries the federation's published reference next to each line's definition:
    a blank ``persons`` means the report prints no 人数 for that line (e.g. monthly subsidies are
    published as 人次 only), ``job_postings`` is published as positions.
    """
    layout: dict[str, dict[str, object]] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            metric = (row.get("metric") or "").strip()
            if not metric:
                continue
            kind = (row.get("kind") or "").strip()
            layout[metric] = {
                "persons": bool((row.get("persons") or "").strip()),
                "events": bool((row.get("events") or "").strip()),
                "amount": bool((row.get("amount_yuan") or "").strip()) or kind == "payment",
                "positions": kind == "posting",
                "note": (row.get("note") or "").strip(),
            }
    return layout


@lru_cache(maxsize=2)
def _page(mtime_ns: int) -> str:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    layout = json.dumps(report_layout(), ensure_ascii=False).replace("</", "<\\/")
    return html.replace(LAYOUT_MARK, layout)


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, summary="The dashboard (数据看板)")
def dashboard() -> HTMLResponse:
    page = STATIC_DIR / "index.html"
    return HTMLResponse(_page(page.stat().st_mtime_ns), headers=NO_CACHE)


def static_file(path: str) -> Path:
    """The file under ``STATIC_DIR`` named by ``path``; 404 for anything else (traversal included)."""
    if not path or "\x00" in path or "\\" in path:
        raise HTTPException(404, "not found")
    try:
        target = (STATIC_DIR / path).resolve()
    except (OSError, RuntimeError):
        raise HTTPException(404, "not found") from None
    if not target.is_relative_to(STATIC_DIR) or not target.is_file() or target.name.startswith("."):
        raise HTTPException(404, "not found")
    return target


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"], summary="Dashboard assets")
def static(path: str) -> FileResponse:
    target = static_file(path)
    media_type = TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media_type, headers=NO_CACHE)
