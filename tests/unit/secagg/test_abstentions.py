"""Abstentions in the secagg wire vocabulary (D26): a centre's signed "never released query q",
verified against the registry; forged, foreign, misattributed or misdirected ones are refused."""

from __future__ import annotations

import os

import pytest

from oncofed.keys.envelope import keyring, sign
from oncofed.keys.identity import Identity
from oncofed.secagg.wire import (
    ABSTENTION_TAG,
    ProtocolError,
    read_abstention,
    sign_abstention,
    sign_failure,
)
from oncofed.v1 import federation_pb2 as fpb

A, B = Identity.generate("centre", "centre-a"), Identity.generate("centre", "centre-b")
RESEARCHER = Identity.generate("researcher", "res-1")
CENTRES = keyring([A.public, B.public])
Q = os.urandom(32)


def test_an_abstention_round_trips_and_names_its_signer() -> None:
    got = read_abstention(sign_abstention(A, Q), CENTRES, Q)
    assert (got.query_hash, got.centre) == (Q, "centre-a")


def test_an_abstention_from_another_query_is_refused() -> None:
    with pytest.raises(ProtocolError, match="does not match"):
        read_abstention(sign_abstention(A, os.urandom(32)), CENTRES, Q)


@pytest.mark.parametrize("forgery", ["not_a_member", "names_another_centre", "failure_notice", "flipped_bit"])
def test_a_forged_abstention_is_refused(forgery: str) -> None:
    if forgery == "not_a_member":              # a researcher (or hub) signs "centre-a never released q"
        data = sign(RESEARCHER, ABSTENTION_TAG, fpb.AbstentionBody(query_hash=Q, centre="centre-a").SerializeToString())
    elif forgery == "names_another_centre":    # centre-b abstains on centre-a's behalf
        data = sign(B, ABSTENTION_TAG, fpb.AbstentionBody(query_hash=Q, centre="centre-a").SerializeToString())
    elif forgery == "failure_notice":          # another signed message of the same centre and query
        data = sign_failure(A, Q, "ANSWERED")
    else:
        raw = bytearray(sign_abstention(A, Q))
        raw[-10] ^= 1
        data = bytes(raw)
    with pytest.raises(ProtocolError):
        read_abstention(data, CENTRES, Q)
