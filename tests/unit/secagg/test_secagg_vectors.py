"""Known-answer vectors (tests/vectors/secagg_vectors.json, PUBLIC TEST KEYS from fixed seeds):
the accept body, the participant set's bytes and H(S), the HKDF info of every pair and the
3-party masked answers must keep their exact format. The masks are recomputed here from the
specification in oncofed/secagg/masks.py with the primitives themselves (X25519 from both sides,
HKDF, ChaCha20, little-endian reads), so the module and its description cannot drift apart. A
failure means the format changed — bump the salt's version instead of regenerating."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import nacl.bindings
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from oncofed.keys.envelope import keyring
from oncofed.keys.identity import Identity
from oncofed.secagg import Accept, EphemeralMaskKey, ParticipantSet, mask, pair_info, sign_accept, unmask_sum

V = json.loads((Path(__file__).parents[2] / "vectors" / "secagg_vectors.json").read_text())
CENTRES = sorted(V["centres"])
MOD = 1 << 128


def lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def private(c):
    return bytes.fromhex(V["centres"][c]["mask_private"])


def public(c):
    return bytes.fromhex(V["centres"][c]["mask_public"])


def accept(c):
    return Accept(V["query_hash"], c, public(c))


def participants():
    return ParticipantSet(tuple(accept(c) for c in V["participant_set"]["given_order"]))


def test_vector_keys_come_from_the_published_seeds():
    for c in CENTRES:
        seed = hashlib.sha256(f"oncofed public test vector seed: {c}/mask".encode()).hexdigest()
        assert V["centres"][c]["mask_private"] == seed
        assert nacl.bindings.crypto_scalarmult_base(private(c)) == public(c)
        assert EphemeralMaskKey.from_cleartext_private_bytes(private(c)).public_key == public(c)


def test_accept_body_and_signed_accept_are_pinned():
    for c in CENTRES:
        body = bytes.fromhex(V["centres"][c]["accept_body"])
        assert body == lp(bytes.fromhex(V["query_hash"])) + lp(c.encode()) + lp(public(c))
        assert accept(c).encode() == body
        assert Accept.decode(body) == accept(c)
        ident = Identity("centre", c, bytes.fromhex(V["centres"][c]["ed25519_seed"]),
                         bytes.fromhex(V["centres"][c]["x25519_secret"]))
        assert sign_accept(ident, accept(c)).hex() == V["centres"][c]["signed_accept"]


def test_participant_set_bytes_and_digest_are_pinned():
    s = participants()
    canonical = bytes.fromhex(V["participant_set"]["canonical"])
    by_spec = (lp(b"oncofed/participants/v1") + struct.pack(">I", 3)
               + b"".join(lp(bytes.fromhex(V["centres"][c]["accept_body"])) for c in CENTRES))
    assert canonical == by_spec
    assert s.encode() == canonical
    assert s.digest() == hashlib.sha256(canonical).digest() == bytes.fromhex(V["participant_set"]["digest"])
    assert ParticipantSet.decode(canonical) == s
    keys = keyring(Identity("centre", c, bytes.fromhex(V["centres"][c]["ed25519_seed"]),
                            bytes.fromhex(V["centres"][c]["x25519_secret"])).public for c in CENTRES)
    signed = [bytes.fromhex(V["centres"][c]["signed_accept"]) for c in CENTRES[::-1]]
    assert ParticipantSet.from_signed(signed, keyring=keys).digest() == s.digest()


def test_pair_info_and_keys_follow_the_specification():
    digest = bytes.fromhex(V["participant_set"]["digest"])
    assert len(V["pairs"]) == 3
    for p in V["pairs"]:
        lo, hi = p["lo"], p["hi"]
        assert lo < hi
        info = (lp(bytes.fromhex(V["query_hash"])) + lp(struct.pack(">I", V["round"])) + lp(digest)
                + lp(lo.encode()) + lp(public(lo)) + lp(hi.encode()) + lp(public(hi)))
        assert info.hex() == p["hkdf_info"]
        for a, b in ((lo, hi), (hi, lo)):     # the same info whichever side computes it
            assert pair_info(query_hash=V["query_hash"], round=V["round"], set_digest=digest,
                             a=accept(a), b=accept(b)) == info
        secret = nacl.bindings.crypto_scalarmult(private(lo), public(hi))
        assert secret == nacl.bindings.crypto_scalarmult(private(hi), public(lo))
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"oncofed/mask/v1", info=info).derive(secret)
        assert key.hex() == p["chacha20_key"]
        stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(48))
        assert [str(int.from_bytes(stream[16 * e:16 * e + 16], "little")) for e in range(3)] == p["first_masks"]


def naive_masked(me, n):
    """The masked vector computed element by element from the specification."""
    out = [int(x) for x in V["centres"][me]["vector"]]
    for p in V["pairs"]:
        if me not in (p["lo"], p["hi"]):
            continue
        key = bytes.fromhex(p["chacha20_key"])
        stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(16 * n))
        sign = 1 if me == p["lo"] else -1
        out = [(v + sign * int.from_bytes(stream[16 * e:16 * e + 16], "little")) % MOD for e, v in enumerate(out)]
    return out


def test_three_party_masked_answers_are_reproduced_and_cancel():
    s = participants()
    answers = []
    for c in CENTRES:
        vector = [int(x) for x in V["centres"][c]["vector"]]
        key = EphemeralMaskKey.from_cleartext_private_bytes(private(c))
        mv = mask(vector, key=key, me=c, participants=s, query_hash=V["query_hash"], round=V["round"])
        assert mv.data.hex() == V["centres"][c]["masked"]
        assert mv.values == naive_masked(c, len(vector))
        assert mv.set_digest.hex() == V["participant_set"]["digest"]
        answers.append(mv)
    total = unmask_sum(answers, participants=s, round=V["round"])
    assert [str(v) for v in total] == V["sum"]
    plain = [sum(int(V["centres"][c]["vector"][e]) for c in CENTRES) % MOD for e in range(len(total))]
    assert total == plain
