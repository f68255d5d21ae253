"""docs/metrics.md lists every metric the worker, the API and the deliverer declare - name, type and
labels as the code has them - each with a PromQL panel that uses it, and nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import processors.metrics  # noqa: F401 - declares the worker's metrics
import projections.api.metrics  # noqa: F401 - the API's
import projections.webhooks.metrics  # noqa: F401 - the deliverer's
from careledger.metrics import declared

DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(careledger_[a-z_]+)` \| (\w+) \| ([^|]+) \| (.+) \| (.+) \|$")


def documented() -> dict[str, tuple[str, tuple[str, ...], str, str]]:
    rows: dict[str, tuple[str, tuple[str, ...], str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        found = ROW.match(line)
        if found:
            name, kind, labels, meaning, panel = found.groups()
            assert name not in rows, f"{name} documented twice"
            names = () if labels.strip() == "—" else tuple(label.strip() for label in labels.split(","))
            rows[name] = (kind, names, meaning.strip(), panel.strip())
    return rows


def test_every_declared_metric_is_documented_as_declared() -> None:
    code = {name: (kind, labels) for name, kind, labels, _help in declared() if name.startswith("careledger_")}
    doc = documented()
    assert sorted(set(code) - set(doc)) == [], "declared but not in docs/metrics.md"
    assert sorted(set(doc) - set(code)) == [], "in docs/metrics.md but declared nowhere"
    assert {name: doc[name][:2] for name in code} == code


def test_every_row_has_a_meaning_and_a_panel_that_queries_it() -> None:
    for name, (_kind, _labels, meaning, panel) in documented().items():
        assert len(meaning) > 10, name
        assert name in panel or f"{name}_bucket" in panel, f"{name}: its panel does not query it"
