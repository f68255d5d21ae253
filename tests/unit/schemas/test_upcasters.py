from __future__ import annotations

import pytest

from schemas import CURRENT_VERSIONS, upcast, validate_event
from schemas.models import EVENT_MODELS
from schemas.upcasters import missing_steps, register
from tests.unit.schemas.examples import event


def test_every_old_version_has_a_step() -> None:
    assert missing_steps() == []
    assert CURRENT_VERSIONS["visit.completed"] == 2
    assert CURRENT_VERSIONS["payment.disbursed"] == 1


def test_v1_visit_upcasts_to_a_valid_v2_without_touching_the_input() -> None:
    v1 = validate_event(event("visit.completed")).event
    before = {**v1, "payload": dict(v1["payload"])}
    v2 = upcast(v1)
    assert v1 == before
    assert v2["version"] == 2
    assert v2["payload"] == {**v1["payload"], "duration_minutes": None}
    # the upcast event is exactly what a v2 producer would have sent
    again = EVENT_MODELS[("visit.completed", 2)].model_validate(v2).model_dump()
    again.pop("id_number")
    assert again == v2


def test_current_events_are_returned_as_is() -> None:
    current = validate_event(event("payment.disbursed")).event
    assert upcast(current) is current


def test_unknown_and_future_versions() -> None:
    with pytest.raises(ValueError):
        upcast({"type": "visit.completed", "version": 3, "payload": {}})
    with pytest.raises(ValueError):
        upcast({"type": "no.such", "version": 1, "payload": {}})


def test_duplicate_registration_refused() -> None:
    with pytest.raises(ValueError):
        register("visit.completed", 1)(lambda e: e)
