"""What the dashboard needs from outside, served by itself: its Chinese font and the API docs' bundles.

(The browser half, with the network blocked and no system CJK font, is
tests/integration/test_dashboard_browser.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from projections.api import dashboard


@pytest.fixture
def font(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A stand-in built font in a private font directory (the real one is built by the set-up)."""
    font_dir = tmp_path / "fonts"
    font_dir.mkdir()
    built = font_dir / f"{dashboard.FONT_FAMILY}-0123456789ab.woff"
    built.write_bytes(b"wOFF" + b"\0" * 60)
    monkeypatch.setattr(dashboard, "FONT_DIR", font_dir)
    monkeypatch.setattr(dashboard, "STATIC_DIR", tmp_path)
    (tmp_path / "index.html").write_text((Path(dashboard.__file__).parent / "static" / "index.html")
                                         .read_text(encoding="utf-8"), encoding="utf-8")
    dashboard._page.cache_clear()
    return built


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_another_host(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', r.text) + re.findall(r"url: *'([^']+)'", r.text)
    assert urls, r.text
    assert not [u for u in urls if "//" in u], urls  # every script, style, icon and the spec: this host
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    assert "/openapi.json" in r.text


def test_redoc_bundle_draws_no_logo_from_its_cdn(client) -> None:
    bundle = client.get("/static/docs/redoc.standalone.js")
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
    assert b"cdn.redoc.ly" in (dashboard.DOCS_DIR / "redoc.standalone.js").read_bytes()  # the vendor's file
    assert b"cdn.redoc.ly" not in bundle.content and b'src:"/static/favicon.svg"' in bundle.content
    assert "validatorUrl" in client.get("/docs").text


def test_docs_bundles_are_cached_but_not_immutable(client) -> None:
    r = client.get("/static/docs/swagger-ui-bundle.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=86400"
    assert client.get("/static/docs/../dashboard.py").status_code == 404
    assert client.get("/static/docs/%2e%2e/core.py").status_code == 404
    assert client.get("/static/docs/").status_code == 404


def test_page_declares_the_built_font_which_is_served_for_a_year(client, font: Path) -> None:
    page = client.get("/").text
    url = f"/static/fonts/{font.name}"
    assert f'src: url("{url}") format("woff")' in page
    assert f'font-family: "{dashboard.FONT_FAMILY}"' in page
    assert dashboard.FONT_MARK not in page
    r = client.get(url)
    assert r.status_code == 200 and r.content == font.read_bytes()
    assert r.headers["content-type"] == "font/woff"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    css = (Path(dashboard.__file__).parent / "static" / "dashboard.css").read_text(encoding="utf-8")
    assert re.search(rf'font-family:[^;]*"{dashboard.FONT_FAMILY}"', css), "the CSS stack names the served font"


def test_without_a_built_font_the_page_has_no_font_face(client, font: Path) -> None:
    font.unlink()
    page = client.get("/").text
    assert "@font-face" not in page and dashboard.FONT_MARK not in page
