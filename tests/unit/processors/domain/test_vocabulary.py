"""The domain keeps its own copy of the contract vocabularies; it must agree with schemas'."""

import pytest

from processors.domain import vocabulary


def test_vocabularies_agree_with_schemas():
    enums = pytest.importorskip("schemas.enums")
    for name in ("PROGRAMS", "NEEDS", "HAZARDS", "STATUSES"):
        assert set(getattr(vocabulary, name)) == set(getattr(enums, name)), name
    assert vocabulary.HOME_VISIT in enums.VISIT_KINDS
    assert vocabulary.NURSING_PROGRAM in enums.PROGRAMS
