"""The errors secure aggregation raises, drawn in one place.

    OncofedError (oncofed.errors)
    └── SecAggError                  anything the masking layer refuses
        ├── MaskKeyUsed              an ephemeral mask key was already used or destroyed
        ├── InvalidParticipantSet    a participant set is malformed, for another query, or lacks me
        └── AnswersMismatch          the masked answers to sum do not form one complete set

Messages name centre ids, counts and lengths — metadata the hub already has — never a value.
A failed signature on an accept is `oncofed.keys.InvalidMessage`, opaque as every other one.
"""

from __future__ import annotations

from oncofed.errors import OncofedError


class SecAggError(OncofedError):
    """Secure aggregation refused its input; nothing was masked or summed."""


class MaskKeyUsed(SecAggError):
    """An ephemeral mask key masks one vector only: a second vector under the same masks would
    give the researcher the difference of the two."""


class InvalidParticipantSet(SecAggError):
    """The participant set is malformed, belongs to another query, or does not hold my accept."""


class AnswersMismatch(SecAggError):
    """Masked answers from different sets, rounds or lengths, or not one per participant: their
    sum would be noise, so it is refused instead of returned."""
