"""Signed envelopes and sign-then-seal: what verifies, and the many ways that must not."""

from __future__ import annotations

import struct

import pytest
from nacl.public import PublicKey, SealedBox

from oncofed.keys import envelope
from oncofed.keys import sealing as seal
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity

ALICE = Identity.generate("centre", "centre-a")
BOB = Identity.generate("researcher", "res-1")
CAROL = Identity.generate("centre", "centre-c")
TAG = "oncofed/query/v1"


def test_round_trip_returns_the_exact_body():
    env = envelope.sign(ALICE, TAG, b"body bytes")
    assert envelope.verify(env, tag=TAG, signer=ALICE.public) == b"body bytes"
    assert envelope.unverified_signer_key_id(env) == ALICE.public.signing_key_id


def test_layout_is_magic_tag_keyid_body_signature():
    env = envelope.sign(ALICE, TAG, b"xyz")
    t = TAG.encode()
    assert env[:4] == b"OFE\x01"
    assert struct.unpack(">H", env[4:6])[0] == len(t)
    assert env[6:6 + len(t)] == t
    assert env[6 + len(t):38 + len(t)] == ALICE.public.signing_key_id
    assert env[38 + len(t):42 + len(t)] == struct.pack(">I", 3)
    assert env[42 + len(t):45 + len(t)] == b"xyz"
    assert len(env) == 45 + len(t) + 64


def test_signature_for_one_type_never_verifies_as_another():
    env = envelope.sign(ALICE, TAG, b"payload")
    with pytest.raises(InvalidMessage):
        envelope.verify(env, tag="oncofed/answer/v1", signer=ALICE.public)


def test_moving_bytes_between_tag_and_body_breaks_the_signature():
    """Without the length prefix, tag 'oncofed/query' + body '/v1…' and tag 'oncofed/query/v1'
    + body '…' would sign the same bytes. Re-frame one as the other, keep the signature."""
    env = envelope.sign(ALICE, "oncofed/query", b"/v1" + b"payload")
    sig, key_id = env[-64:], ALICE.public.signing_key_id
    t = b"oncofed/query/v1"
    forged = (b"OFE\x01" + struct.pack(">H", len(t)) + t + key_id + struct.pack(">I", 7)
              + b"payload" + sig)
    with pytest.raises(InvalidMessage):
        envelope.verify(forged, tag="oncofed/query/v1", signer=ALICE.public)


def test_wrong_signer_unknown_key_and_swapped_key_id_fail():
    env = envelope.sign(ALICE, TAG, b"payload")
    with pytest.raises(InvalidMessage):
        envelope.verify(env, tag=TAG, signer=CAROL.public)
    ring = envelope.keyring([BOB.public, CAROL.public])
    with pytest.raises(InvalidMessage):
        envelope.verify_from(env, tag=TAG, keyring=ring)
    # claim Carol's key id on Alice's signature: the verifier picks Carol's key and fails
    t = len(TAG)
    swapped = env[:6 + t] + CAROL.public.signing_key_id + env[38 + t:]
    with pytest.raises(InvalidMessage):
        envelope.verify_from(swapped, tag=TAG, keyring=envelope.keyring([ALICE.public,
                                                                          CAROL.public]))


def test_verify_from_keyring_says_who_signed():
    ring = envelope.keyring([ALICE.public, BOB.public, CAROL.public])
    v = envelope.verify_from(envelope.sign(CAROL, TAG, b"hi"), tag=TAG, keyring=ring)
    assert v.signer == CAROL.public
    assert v.body == b"hi"


@pytest.mark.parametrize("mangle", [
    lambda e: e[:-1], lambda e: e + b"\x00", lambda e: b"", lambda e: e[:5],
    lambda e: b"OFE\x02" + e[4:], lambda e: e[:4] + b"\x00\x00" + e[6:],
    lambda e: e[:-70] + bytes([e[-70] ^ 1]) + e[-69:],
])
def test_framing_errors_are_all_the_same_opaque_error(mangle):
    env = envelope.sign(ALICE, TAG, b"some body")
    with pytest.raises(InvalidMessage) as info:
        envelope.verify(mangle(env), tag=TAG, signer=ALICE.public)
    assert str(info.value) == "message failed verification"


def test_oversized_envelopes_are_refused_before_verification():
    env = envelope.sign(ALICE, TAG, b"x" * 1000)
    with pytest.raises(InvalidMessage):
        envelope.verify(env, tag=TAG, signer=ALICE.public, max_bytes=500)


def test_reserved_and_malformed_tags_cannot_be_signed():
    with pytest.raises(ValueError, match="reserved"):
        envelope.sign(ALICE, "oncofed/sealed/v1", b"x")
    for bad in ("", "Oncofed/Query", "tag with space", "x" * 300):
        with pytest.raises(ValueError, match="invalid envelope type tag"):
            envelope.sign(ALICE, bad, b"x")


# --- sign-then-seal ---------------------------------------------------------------------------

CTX = "oncofed/answer/v1 query=abc round=1"


def test_seal_round_trip():
    sealed = seal.seal(b"secret aggregate", BOB.public, sender=ALICE, context=CTX)
    assert b"secret aggregate" not in sealed
    assert seal.open_sealed(sealed, recipient=BOB, sender=ALICE.public, context=CTX) == (
        b"secret aggregate")
    v = seal.open_sealed_from(sealed, recipient=BOB, context=CTX,
                              keyring=envelope.keyring([ALICE.public, CAROL.public]))
    assert v.signer == ALICE.public
    assert v.body == b"secret aggregate"


def test_wrong_recipient_cannot_open():
    sealed = seal.seal(b"m", BOB.public, sender=ALICE, context=CTX)
    with pytest.raises(InvalidMessage):
        seal.open_sealed(sealed, recipient=CAROL, sender=ALICE.public, context=CTX)


def test_other_context_fails():
    sealed = seal.seal(b"m", BOB.public, sender=ALICE, context=CTX)
    for other in ("oncofed/answer/v1 query=abc round=2", "oncofed/query/v1 query=abc round=1"):
        with pytest.raises(InvalidMessage):
            seal.open_sealed(sealed, recipient=BOB, sender=ALICE.public, context=other)


def test_unexpected_sender_fails():
    sealed = seal.seal(b"m", BOB.public, sender=ALICE, context=CTX)
    with pytest.raises(InvalidMessage):
        seal.open_sealed(sealed, recipient=BOB, sender=CAROL.public, context=CTX)


def test_anyone_can_seal_but_only_a_signature_makes_a_sender():
    """SealedBox alone is anonymous: Mallory seals a forged inner envelope 'from Alice'."""
    t = b"oncofed/sealed/v1"
    body = struct.pack(">H", len(CTX)) + CTX.encode() + BOB.public.box_key_id + b"forged"
    inner = (b"OFE\x01" + struct.pack(">H", len(t)) + t + ALICE.public.signing_key_id
             + struct.pack(">I", len(body)) + body + bytes(64))
    forged = b"OFS\x01" + SealedBox(PublicKey(BOB.public.x25519)).encrypt(inner)
    with pytest.raises(InvalidMessage):
        seal.open_sealed(forged, recipient=BOB, sender=ALICE.public, context=CTX)


def test_recipient_cannot_forward_a_signed_message_to_someone_else():
    """Bob opens Alice's message and re-seals her signed inner envelope to Carol: Carol sees it
    was addressed to Bob's key and refuses (surreptitious forwarding)."""
    sealed = seal.seal(b"for bob only", BOB.public, sender=ALICE, context=CTX)
    inner = SealedBox(BOB._box_secret()).decrypt(sealed[4:])
    reforwarded = b"OFS\x01" + SealedBox(PublicKey(CAROL.public.x25519)).encrypt(inner)
    with pytest.raises(InvalidMessage):
        seal.open_sealed(reforwarded, recipient=CAROL, sender=ALICE.public, context=CTX)


def test_inner_sealed_envelope_is_not_an_ordinary_signed_message():
    sealed = seal.seal(b"m", BOB.public, sender=ALICE, context=CTX)
    inner = SealedBox(BOB._box_secret()).decrypt(sealed[4:])
    with pytest.raises(InvalidMessage):
        envelope.verify(inner, tag=TAG, signer=ALICE.public)


def test_seal_refuses_empty_or_huge_context():
    for ctx in ("", "x" * 2000):
        with pytest.raises(ValueError, match="context must be"):
            seal.seal(b"m", BOB.public, sender=ALICE, context=ctx)


@pytest.mark.parametrize("mangle", [lambda s: s[:-1], lambda s: s + b"\x00",
                                    lambda s: b"OFS\x02" + s[4:], lambda s: s[4:], lambda s: b""])
def test_mangled_sealed_messages_fail_opaquely(mangle):
    sealed = seal.seal(b"m", BOB.public, sender=ALICE, context=CTX)
    with pytest.raises(InvalidMessage) as info:
        seal.open_sealed(mangle(sealed), recipient=BOB, sender=ALICE.public, context=CTX)
    assert str(info.value) == "message failed verification"
