"""The dashboard: one HTML page and its static assets, served by the read API (no build step).

``GET /`` is ``static/index.html`` with the published layout of the half-year report filled in
(which columns the federation prints for each line, and its notes: from ``report.csv``, the
packaged report definition) and the ``@font-face`` of the dashboard's own Chinese font when the
set-up built it (``infra/dashboard_font.py``: phones and desks without a CJK font get glyphs, not
boxes); ``GET /static/{path}`` serves the files under ``static/`` (the font with a one-year
immutable cache: its name carries its hash) and, under ``static/docs/``, Swagger UI and ReDoc from
the ``fastapi-offline`` package, so ``/docs`` and ``/redoc`` (served here too) need no internet.
All public (policy.py): the page holds no data.  The browser asks the API for the figures itself:
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

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from projections.api.report import REPORT_CSV

STATIC_DIR = Path(__file__).resolve().parent / "static"
FONT_DIR = STATIC_DIR / "fonts"  # built at set-up, not in git (infra/dashboard_font.py)
FONT_FAMILY = "careledger-cjk"
DOCS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"  # Swagger UI 5 + ReDoc 2 bundles
DOCS_PREFIX = "docs/"
LAYOUT_MARK = "__REPORT_LAYOUT__"
FONT_MARK = "<!--__FONT_FACE__-->"
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
DOCS_CACHE = {"Cache-Control": "public, max-age=86400"}
# The page is re-read when its file changes (handy while editing the dashboard); assets are
# revalidated by the browser (ETag / Last-Modified from FileResponse).
NO_CACHE = {"Cache-Control": "no-cache"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8", ".json": "application/json",
         ".png": "image/png", ".ico": "image/x-icon", ".woff": "font/woff", ".woff2": "font/woff2"}

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


def served_font(font_dir: Path | None = None) -> Path | None:
    """The dashboard font the set-up built (the newest if several), or None."""
    built = sorted((font_dir or FONT_DIR).glob(f"{FONT_FAMILY}-*.woff"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return built[-1] if built else None


def font_face(font: Path | None) -> str:
    """The ``@font-face`` (and its preload) for ``font``; empty without one: the CSS stack falls back."""
    if font is None:
        return ""
    url = f"/static/fonts/{font.name}"
    return (f'<link rel="preload" href="{url}" as="font" type="font/woff" crossorigin>\n'
            f'<style>@font-face {{ font-family: "{FONT_FAMILY}"; src: url("{url}") format("woff"); '
            "font-display: swap; }</style>")


@lru_cache(maxsize=4)
def _page(mtime_ns: int, font_name: str | None) -> str:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    layout = json.dumps(report_layout(), ensure_ascii=False).replace("</", "<\\/")
    font = FONT_DIR / font_name if font_name else None
    return html.replace(LAYOUT_MARK, layout).replace(FONT_MARK, font_face(font))


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, summary="The dashboard (数据看板)")
def dashboard() -> HTMLResponse:
    page = STATIC_DIR / "index.html"
    font = served_font()
    return HTMLResponse(_page(page.stat().st_mtime_ns, font.name if font else None), headers=NO_CACHE)


def _file_under(root: Path, path: str) -> Path:
    """The file under ``root`` named by ``path``; 404 for anything else (traversal included)."""
    if not path or "\x00" in path or "\\" in path:
        raise HTTPException(404, "not found")
    try:
        target = (root / path).resolve()
    except (OSError, RuntimeError):
        raise HTTPException(404, "not found") from None
    if not target.is_relative_to(root) or not target.is_file() or target.name.startswith("."):
        raise HTTPException(404, "not found")
    return target


def static_file(path: str) -> Path:
    """The file under ``STATIC_DIR`` (or, for ``docs/...``, the API docs bundles) named by ``path``."""
    if path.startswith(DOCS_PREFIX):
        return _file_under(DOCS_DIR, path[len(DOCS_PREFIX):])
    return _file_under(STATIC_DIR, path)


REDOC_BUNDLE = "redoc.standalone.js"
# ReDoc 2 draws the "API docs by Redocly" logo from its CDN, unconditionally: served with our icon
REDOC_LOGO = (b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"/static/favicon.svg")


@lru_cache(maxsize=1)
def _redoc_bundle(mtime_ns: int) -> bytes:
    return (DOCS_DIR / REDOC_BUNDLE).read_bytes().replace(*REDOC_LOGO)


@router.api_route("/static/{path:path}", methods=["GET", "HEAD"], summary="Dashboard assets")
def static(path: str) -> Response:
    target = static_file(path)
    if target == DOCS_DIR / REDOC_BUNDLE:
        return Response(_redoc_bundle(target.stat().st_mtime_ns), media_type=TYPES[".js"], headers=DOCS_CACHE)
    media_type = TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.parent == FONT_DIR:
        headers = IMMUTABLE
    elif path.startswith(DOCS_PREFIX):
        headers = DOCS_CACHE
    else:
        headers = NO_CACHE
    return FileResponse(target, media_type=media_type, headers=headers)


# ---- the API's documentation, offline (the app is built with docs_url=None, redoc_url=None) -----------
def _openapi_url(request: Request) -> str:
    return request.app.openapi_url or "/openapi.json"


@router.get("/docs", response_class=HTMLResponse, summary="Swagger UI, served without a CDN")
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url="/docs/oauth2-redirect", swagger_js_url="/static/docs/swagger-ui-bundle.js",
        swagger_css_url="/static/docs/swagger-ui.css", swagger_favicon_url="/static/favicon.svg",
        swagger_ui_parameters={"validatorUrl": None})  # no badge from validator.swagger.io


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse, summary="Swagger UI OAuth2 redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", response_class=HTMLResponse, summary="ReDoc, served without a CDN")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=_openapi_url(request), title=f"{request.app.title} - ReDoc",
                          redoc_js_url="/static/docs/redoc.standalone.js",
                          redoc_favicon_url="/static/favicon.svg", with_google_fonts=False)
