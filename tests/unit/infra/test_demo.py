"""``careledger demo``'s read-back of the caseworkers' work list (the API answers are stubbed here;
the whole demo runs against a real stack in `make demo`)."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from infra import demo


def test_tail_months_option() -> None:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["demo"]).tail_months == 0
    assert parser.parse_args(["demo", "--tail-months", "6"]).tail_months == 6


def test_print_warnings_asks_each_rule_at_the_end_of_the_half_year(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, dict[str, list[str]], str | None]] = []
    totals = {"visit_overdue": 7283, "need_unmet": 120, "certificate_expiring": 132, "nursing_subsidy_missing": 306}

    def fake_get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        query = parse_qs(urlparse(url).query)
        asked.append((urlparse(url).path, query, token))
        return 200, {"total": totals[query["rule"][0]], "items": []}

    monkeypatch.setattr(demo, "_get", fake_get)
    out = io.StringIO()
    settings = SimpleNamespace(api_url="http://127.0.0.1:1")
    assert demo.print_warnings(settings, "tok", out) == totals
    assert {q["as_of"][0] for _, q, _ in asked} == {"2024-06-30"} and {t for _, _, t in asked} == {"tok"}
    assert [q["rule"][0] for _, q, _ in asked] == list(totals)
    text = out.getvalue()
    assert "7,841" in text and "7,283" in text and "入户访视逾期" in text
    assert demo.print_warnings(settings, None, io.StringIO()) is None  # no admin token: nothing asked
    assert len(asked) == 4
