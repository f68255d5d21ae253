"""Synthetic names and mobile numbers for the simulated persons (``person.registered`` payload).

So that a demo's work queues say who (张秀英, 138…), not only a pseudonym.  Derived from a hash of
the seed and the person's index, never from the simulator's random streams: adding them changed
no other draw, so the calibrated half-year is the same event for event.  Drawn from small fixed
lists (``geo.py``): plausible, and nobody's.
"""

from __future__ import annotations

import hashlib

from producers.simulate import geo


def person_identity(seed: int, idx: int, male: bool) -> tuple[str, str]:
    """(name, phone) of person ``idx`` of the simulation seeded ``seed``: the same every run."""
    d = hashlib.blake2b(f"identity:{seed}:{idx}".encode(), digest_size=16).digest()
    surname = geo.SURNAMES[d[0] % len(geo.SURNAMES)]
    if d[1] % 10 < 3:  # about three in ten given names are one character
        single = geo.GIVEN_MALE if male else geo.GIVEN_FEMALE
        given = single[d[2] % len(single)]
    else:
        first = geo.GIVEN_MALE_FIRST if male else geo.GIVEN_FEMALE_FIRST
        second = geo.GIVEN_MALE_SECOND if male else geo.GIVEN_FEMALE_SECOND
        a, b = first[d[2] % len(first)], second[d[3] % len(second)]
        given = a if a == b else a + b
    prefix = geo.MOBILE_PREFIXES[d[4] % len(geo.MOBILE_PREFIXES)]
    digits = int.from_bytes(d[5:12], "big") % 100_000_000
    return surname + given, f"{prefix}{digits:08d}"
