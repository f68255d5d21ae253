"""The domain's own names fit the catalogue's vocabularies."""

from processors.domain import vocabulary
from schemas import enums


def test_domain_names_belong_to_the_catalogue():
    assert vocabulary.HOME_VISIT in enums.VISIT_KINDS
    assert vocabulary.NURSING_PROGRAM in enums.PROGRAMS
    assert vocabulary.ENDING_STATUSES < set(enums.STATUSES)
