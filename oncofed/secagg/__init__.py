"""Secure aggregation (floor 2): participant sets and the pairwise masks that hide each centre's
answer from the hub and the researcher, leaving only the sum over the participant set (DESIGN §4).

    # centre, on accepting query q
    key = EphemeralMaskKey.generate()
    signed = sign_accept(identity, Accept(q, "centre-a", key.public_key))
    # centre, once the hub sent S (the signed accepts)
    s = ParticipantSet.from_signed(envelopes, keyring=registry_keyring)
    s.check(query_hash=q, me="centre-a", my_mask_key=key.public_key, targets=T, min_size=k)
    answer = mask(vector, key=key, me="centre-a", participants=s, query_hash=q, round=0)
    answer.data, answer.set_digest          # into the signed answer header and body; key is spent
    # researcher's client, with one verified answer per member of S
    total = unmask_sum(answers, participants=s, round=0)
    # a Flower run: one accept, one RunMaskKey, rounds 1, 2, … each masked once (runs.py, D25)
    run_key = RunMaskKey.generate()
    answer = run_key.mask(vector, me="centre-a", participants=s, query_hash=q, round=1)

Only this package and oncofed.keys import nacl and cryptography (ruff's banned-imports rule):
here for X25519, HKDF and ChaCha20, which the masks need and no recipe in keys provides.
Errors: see `oncofed.secagg.errors`. What the masks do and do not protect: docs/security.md.
"""

from oncofed.secagg.errors import AnswersMismatch, InvalidParticipantSet, MaskKeyUsed, SecAggError
from oncofed.secagg.masks import EphemeralMaskKey, MaskedVector, mask, pair_info, unmask_sum
from oncofed.secagg.participants import (
    ACCEPT_TAG,
    DEFAULT_MIN_PARTICIPANTS,
    Accept,
    ParticipantSet,
    open_accept,
    sign_accept,
)
from oncofed.secagg.runs import RunMaskKey

__all__ = ["ACCEPT_TAG", "DEFAULT_MIN_PARTICIPANTS", "Accept", "AnswersMismatch", "EphemeralMaskKey",
           "InvalidParticipantSet", "MaskKeyUsed", "MaskedVector", "ParticipantSet", "RunMaskKey", "SecAggError",
           "mask", "open_accept", "pair_info", "sign_accept", "unmask_sum"]
