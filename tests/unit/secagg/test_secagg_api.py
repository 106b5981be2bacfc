"""The secure-aggregation API refuses misuse: malformed or foreign participant sets, accepts signed
by the wrong member, vectors out of range, answers that do not form one complete set, and any
second use or copy of a mask key. A refused call leaves an unused key usable."""

from __future__ import annotations

import copy
import hashlib
import pickle

import pytest

from oncofed.keys import envelope
from oncofed.keys.envelope import keyring
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity
from oncofed.query import sum_vectors
from oncofed.secagg import (
    ACCEPT_TAG,
    Accept,
    AnswersMismatch,
    EphemeralMaskKey,
    InvalidParticipantSet,
    MaskedVector,
    MaskKeyUsed,
    ParticipantSet,
    SecAggError,
    mask,
    open_accept,
    sign_accept,
    unmask_sum,
)
from oncofed.secagg.lanes import pack, sum_packed, unpack

Q = hashlib.sha256(b"query").hexdigest()
OTHER_Q = hashlib.sha256(b"another query").hexdigest()
IDS = ("centre-a", "centre-b", "centre-c")
MOD = 1 << 128


def make_set(ids=IDS, query_hash=Q):
    keys = {c: EphemeralMaskKey.generate() for c in ids}
    return keys, ParticipantSet(tuple(Accept(query_hash, c, keys[c].public_key) for c in ids))


def all_masked(keys, s, vectors, round=0):
    return [mask(vectors[c], key=keys[c], me=c, participants=s, query_hash=s.query_hash, round=round)
            for c in s.centre_ids]


# --- participant sets ---------------------------------------------------------------------------

def test_the_order_accepts_arrive_in_does_not_change_the_set():
    keys, s = make_set()
    shuffled = ParticipantSet(tuple(Accept(Q, c, keys[c].public_key) for c in (IDS[2], IDS[0], IDS[1])))
    assert shuffled == s and shuffled.digest() == s.digest() and shuffled.centre_ids == IDS


def test_any_change_of_membership_key_or_query_changes_the_digest():
    _, s = make_set()
    digests = {s.digest()}
    digests.add(ParticipantSet(s.accepts[:2]).digest())
    rekeyed = Accept(Q, "centre-c", EphemeralMaskKey.generate().public_key)
    digests.add(ParticipantSet((*s.accepts[:2], rekeyed)).digest())
    digests.add(ParticipantSet(tuple(Accept(OTHER_Q, a.centre_id, a.mask_public_key) for a in s)).digest())
    assert len(digests) == 4


@pytest.mark.parametrize("bad", [
    lambda keys: [Accept(Q, "centre-a", keys["centre-a"].public_key)],                       # one member
    lambda keys: [Accept(Q, "centre-a", keys["centre-a"].public_key),
                  Accept(Q, "centre-a", keys["centre-b"].public_key)],                       # same centre twice
    lambda keys: [Accept(Q, "centre-a", keys["centre-a"].public_key),
                  Accept(Q, "centre-b", keys["centre-a"].public_key)],                       # same key twice
    lambda keys: [Accept(Q, "centre-a", keys["centre-a"].public_key),
                  Accept(OTHER_Q, "centre-b", keys["centre-b"].public_key)],                 # two queries
], ids=["one member", "duplicate centre", "duplicate key", "mixed queries"])
def test_malformed_sets_are_refused(bad):
    keys, _ = make_set()
    with pytest.raises(InvalidParticipantSet):
        ParticipantSet(tuple(bad(keys)))


def test_a_set_above_the_maximum_is_refused():
    key = EphemeralMaskKey.generate().public_key
    accepts = tuple(Accept(Q, f"c-{i:04d}", hashlib.sha256(key + bytes([i % 256, i // 256])).digest())
                    for i in range(1001))
    with pytest.raises(InvalidParticipantSet, match="1000"):
        ParticipantSet(accepts)


def test_decode_is_strict():
    _, s = make_set()
    data = s.encode()
    for broken in (data[:-1], data + b"\0", data[:10], b"", data.replace(b"participants", b"participantz")):
        with pytest.raises(InvalidParticipantSet):
            ParticipantSet.decode(broken)
    # the same accepts in another order are a different encoding of the same set: refused
    a, b, c = (x.encode() for x in s.accepts)
    head = data[:len(data) - sum(4 + len(x) for x in (a, b, c))]
    reordered = head + b"".join(len(x).to_bytes(4, "big") + x for x in (b, a, c))
    with pytest.raises(InvalidParticipantSet, match="canonical"):
        ParticipantSet.decode(reordered)


def test_check_names_what_is_wrong():
    keys, s = make_set()
    s.check(query_hash=Q, me="centre-a", my_mask_key=keys["centre-a"].public_key, targets=IDS, min_size=3)
    cases = [({"query_hash": OTHER_Q}, "another query"),
             ({"query_hash": Q, "me": "centre-z"}, "centre-z is not in"),
             ({"query_hash": Q, "me": "centre-a", "my_mask_key": keys["centre-b"].public_key}, "another mask key"),
             ({"query_hash": Q, "targets": IDS[:2]}, "centre-c .* not targeted"),
             ({"query_hash": Q, "min_size": 4}, "too few participants: 3 < 4")]
    for kwargs, message in cases:
        with pytest.raises(InvalidParticipantSet, match=message):
            s.check(**kwargs)


# --- signed accepts -----------------------------------------------------------------------------

CENTRE_IDS = {c: Identity.generate("centre", c) for c in IDS}
RESEARCHER = Identity.generate("researcher", "res-1")
RING = keyring([*(i.public for i in CENTRE_IDS.values()), RESEARCHER.public])


def test_signed_accepts_verify_and_form_the_set():
    keys = {c: EphemeralMaskKey.generate() for c in IDS}
    signed = [sign_accept(CENTRE_IDS[c], Accept(Q, c, keys[c].public_key)) for c in IDS]
    s = ParticipantSet.from_signed(signed[::-1], keyring=RING)
    assert s.centre_ids == IDS
    assert s.signed == tuple(signed)                 # kept, in canonical order, for forwarding


def test_a_tampered_or_unknown_accept_fails_opaquely():
    key = EphemeralMaskKey.generate()
    signed = bytearray(sign_accept(CENTRE_IDS["centre-a"], Accept(Q, "centre-a", key.public_key)))
    signed[-70] ^= 1                                  # a bit of the mask key
    with pytest.raises(InvalidMessage):
        open_accept(bytes(signed), keyring=RING)
    stranger = Identity.generate("centre", "centre-x")
    with pytest.raises(InvalidMessage):
        open_accept(sign_accept(stranger, Accept(Q, "centre-x", key.public_key)), keyring=RING)


def test_an_accept_naming_another_centre_or_signed_by_a_researcher_is_refused():
    key = EphemeralMaskKey.generate()
    with pytest.raises(ValueError, match="cannot sign an accept for centre-b"):
        sign_accept(CENTRE_IDS["centre-a"], Accept(Q, "centre-b", key.public_key))
    forged = envelope.sign(CENTRE_IDS["centre-a"], ACCEPT_TAG, Accept(Q, "centre-b", key.public_key).encode())
    with pytest.raises(InvalidParticipantSet, match="signed by centre centre-a"):
        open_accept(forged, keyring=RING)
    by_researcher = envelope.sign(RESEARCHER, ACCEPT_TAG, Accept(Q, "res-1", key.public_key).encode())
    with pytest.raises(InvalidParticipantSet, match="researcher"):
        open_accept(by_researcher, keyring=RING)


# --- masking ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error"), [
    ({"query_hash": OTHER_Q}, InvalidParticipantSet),
    ({"me": "centre-z"}, InvalidParticipantSet),
    ({"me": "centre-b"}, InvalidParticipantSet),                   # my key is not centre-b's
    ({"vector": [-1, 2]}, SecAggError),
    ({"vector": [MOD]}, SecAggError),
    ({"vector": [1.0]}, SecAggError),
    ({"vector": []}, SecAggError),
    ({"round": -1}, ValueError),
    ({"round": 2**32}, ValueError),
])
def test_a_refused_mask_call_consumes_nothing(kwargs, error):
    keys, s = make_set()
    args = {"vector": [1, 2], "key": keys["centre-a"], "me": "centre-a", "participants": s,
            "query_hash": Q, "round": 0, **kwargs}
    with pytest.raises(error):
        mask(args.pop("vector"), **args)
    assert keys["centre-a"].usable
    mask([1, 2], key=keys["centre-a"], me="centre-a", participants=s, query_hash=Q, round=0)
    assert not keys["centre-a"].usable


def test_a_low_order_mask_key_in_the_set_is_refused():
    keys, _ = make_set(IDS[:2])
    s = ParticipantSet((Accept(Q, "centre-a", keys["centre-a"].public_key), Accept(Q, "centre-b", bytes(32))))
    with pytest.raises(InvalidParticipantSet, match="not a usable X25519 key"):
        mask([1], key=keys["centre-a"], me="centre-a", participants=s, query_hash=Q, round=0)
    assert not keys["centre-a"].usable               # the secret was used: the key is gone


def test_mask_keys_cannot_be_built_copied_pickled_or_shown():
    key = EphemeralMaskKey.generate()
    with pytest.raises(TypeError):
        EphemeralMaskKey(bytes(32))
    for leak in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            leak(key)
    secret = key.cleartext_private_bytes()
    assert secret.hex() not in repr(key) and key.public_key.hex()[:16] in repr(key)
    key.destroy()
    with pytest.raises(MaskKeyUsed):
        key.cleartext_private_bytes()


def test_a_restored_key_masks_to_the_same_bytes():
    keys, s = make_set()
    saved = keys["centre-a"].cleartext_private_bytes()
    first = mask([5, 6], key=keys["centre-a"], me="centre-a", participants=s, query_hash=Q, round=2)
    again = mask([5, 6], key=EphemeralMaskKey.from_cleartext_private_bytes(saved), me="centre-a",
                 participants=s, query_hash=Q, round=2)
    assert again == first


# --- summing ------------------------------------------------------------------------------------

def test_unmask_sum_refuses_anything_but_one_complete_set():
    keys, s = make_set()
    vectors = {c: [i + 1, 10 * i] for i, c in enumerate(IDS)}
    answers = all_masked(keys, s, vectors)
    assert unmask_sum(answers, participants=s, round=0) == sum_vectors(vectors.values())
    a, b, c = answers
    _, other = make_set()
    wrong_len = MaskedVector(c.centre_id, c.query_hash, 0, c.set_digest, c.data + bytes(16))
    stranger = MaskedVector("centre-x", c.query_hash, 0, c.set_digest, c.data)
    cases = [([a, b], 0, s, "no answer from centre-c"),
             ([a, b, c, c], 0, s, "more than one answer from centre-c"),
             ([a, b, c, stranger], 0, s, "centre-x, which are not in"),
             ([a, b, c], 1, s, "another query, round"),
             ([a, b, c], 0, other, "another query, round"),
             ([a, b, wrong_len], 0, s, "differ in length")]
    for given, rnd, pset, message in cases:
        with pytest.raises(AnswersMismatch, match=message):
            unmask_sum(given, participants=pset, round=rnd)


def test_lanes_sum_like_python_integers():
    vectors = [[0, 1, MOD - 1, 1 << 127, 12345], [MOD - 1, MOD - 1, MOD - 1, 1 << 127, 0], [1, 0, 2, 3, 4]]
    assert unpack(sum_packed([pack(v) for v in vectors], 5)) == sum_vectors(vectors)
    assert unpack(pack(vectors[0])) == vectors[0]
    with pytest.raises(SecAggError):
        sum_packed([pack([1, 2])], 3)
