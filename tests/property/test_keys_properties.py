"""Property tests for the crypto recipes: round trips hold for any input, and flipping any single
bit of a signed envelope or a sealed message makes it fail — with the one opaque error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.keys import envelope
from oncofed.keys import sealing as seal
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity

# Module-level keys: hypothesis re-runs the test body many times, key generation is not the
# property under test.
ALICE = Identity.generate("centre", "centre-a")
BOB = Identity.generate("researcher", "res-1")
MALLORY = Identity.generate("centre", "centre-m")

tags = st.from_regex(r"\A[a-z0-9][a-z0-9._/-]{0,40}\Z").filter(
    lambda t: not t.startswith("oncofed/sealed/"))
bodies = st.binary(max_size=2048)
contexts = st.text(min_size=1, max_size=60).filter(lambda c: len(c.encode()) <= 1024)


@settings(max_examples=150, deadline=None)
@given(tag=tags, body=bodies)
def test_sign_verify_round_trip(tag, body):
    env = envelope.sign(ALICE, tag, body)
    assert envelope.verify(env, tag=tag, signer=ALICE.public) == body


@settings(max_examples=200, deadline=None)
@given(tag=tags, body=bodies, data=st.data())
def test_any_single_bit_flip_in_an_envelope_fails(tag, body, data):
    env = envelope.sign(ALICE, tag, body)
    bit = data.draw(st.integers(0, len(env) * 8 - 1), label="bit")
    flipped = bytearray(env)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidMessage):
        envelope.verify(bytes(flipped), tag=tag, signer=ALICE.public)


@settings(max_examples=100, deadline=None)
@given(tag=tags, other=tags, body=bodies)
def test_a_signature_verifies_under_its_own_tag_only(tag, other, body):
    env = envelope.sign(ALICE, tag, body)
    if other != tag:
        with pytest.raises(InvalidMessage):
            envelope.verify(env, tag=other, signer=ALICE.public)
    with pytest.raises(InvalidMessage):
        envelope.verify(env, tag=tag, signer=MALLORY.public)


@settings(max_examples=100, deadline=None)
@given(payload=bodies, context=contexts)
def test_seal_open_round_trip(payload, context):
    sealed = seal.seal(payload, BOB.public, sender=ALICE, context=context)
    assert seal.open_sealed(sealed, recipient=BOB, sender=ALICE.public, context=context) == payload


@settings(max_examples=150, deadline=None)
@given(payload=bodies, context=contexts, data=st.data())
def test_any_single_bit_flip_in_a_sealed_message_fails(payload, context, data):
    sealed = seal.seal(payload, BOB.public, sender=ALICE, context=context)
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1), label="bit")
    flipped = bytearray(sealed)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidMessage):
        seal.open_sealed(bytes(flipped), recipient=BOB, sender=ALICE.public, context=context)


@settings(max_examples=60, deadline=None)
@given(payload=bodies, context=contexts, other=contexts)
def test_sealed_message_opens_only_for_its_recipient_and_context(payload, context, other):
    sealed = seal.seal(payload, BOB.public, sender=ALICE, context=context)
    with pytest.raises(InvalidMessage):
        seal.open_sealed(sealed, recipient=MALLORY, sender=ALICE.public, context=context)
    if other != context:
        with pytest.raises(InvalidMessage):
            seal.open_sealed(sealed, recipient=BOB, sender=ALICE.public, context=other)
