"""Known-answer vectors (tests/vectors/trust_vectors.json, PUBLIC TEST KEYS from fixed seeds):
the signed envelope, sealed message, enrolment request, key file and trust-document bodies must
keep their exact wire format. A failure here means the format drifted — bump its version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from oncofed.keys import envelope, keystore
from oncofed.keys import sealing as seal
from oncofed.keys.enrolment import make_request, read_request
from oncofed.keys.identity import Identity
from oncofed.keys.permits import decode_permit, encode_permit
from oncofed.keys.registry import (
    decode_registry,
    decode_revocations,
    encode_registry,
    encode_revocations,
)

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "trust_vectors.json").read_text())


def identity(name: str) -> Identity:
    k = VECTORS["keys"][name]
    return Identity(k["role"], k["member_id"], bytes.fromhex(k["ed25519_seed"]),
                    bytes.fromhex(k["x25519_secret"]))


def test_vector_keys_come_from_the_published_seeds():
    for k in VECTORS["keys"].values():
        for part, field in (("ed25519", "ed25519_seed"), ("x25519", "x25519_secret")):
            expected = hashlib.sha256(
                f"oncofed public test vector seed: {k['member_id']}/{part}".encode()).hexdigest()
            assert k[field] == expected
    for name, k in VECTORS["keys"].items():
        assert identity(name).public.ed25519.hex() == k["ed25519_public"]
        assert identity(name).public.x25519.hex() == k["x25519_public"]


@pytest.mark.parametrize("vec", VECTORS["envelopes"], ids=lambda v: v["tag"])
def test_envelope_vectors_are_reproduced_byte_for_byte(vec):
    signer = identity(vec["signer"])
    body, expected = bytes.fromhex(vec["body"]), bytes.fromhex(vec["envelope"])
    assert envelope.sign(signer, vec["tag"], body) == expected
    assert envelope.verify(expected, tag=vec["tag"], signer=signer.public) == body


def test_prefix_tag_vectors_sign_different_bytes():
    by_tag = {v["tag"]: v for v in VECTORS["envelopes"]}
    a, b = by_tag["oncofed/query/v1"], by_tag["oncofed/query"]
    assert bytes.fromhex(a["envelope"])[-64:] != bytes.fromhex(b["envelope"])[-64:]


@pytest.mark.parametrize("vec", VECTORS["sealed"], ids=lambda v: v["context"])
def test_sealed_vectors_still_open(vec):
    recipient, sender = identity(vec["recipient"]), identity(vec["sender"])
    data = bytes.fromhex(vec["sealed"])
    assert data[:4] == b"OFS\x01"
    assert seal.open_sealed(data, recipient=recipient, sender=sender.public,
                            context=vec["context"]) == bytes.fromhex(vec["payload"])


def test_enrolment_request_vector():
    vec = VECTORS["enrolment_request"]
    ident = identity(vec["identity"])
    expected = bytes.fromhex(vec["request"])
    assert make_request(ident, vec["csr_pem"].encode(), vec["created_at"]) == expected
    assert read_request(expected).identity == ident.public


def test_identity_key_file_vector_loads():
    vec = VECTORS["identity_key_file"]
    loaded = keystore.decode_private(vec["file"].encode(), vec["passphrase"].encode(),
                                     Path("vector"))
    assert loaded.public == identity(vec["identity"]).public


def test_registry_body_vector():
    body = bytes.fromhex(VECTORS["documents"]["registry"]["body"])
    reg = decode_registry(body)
    assert encode_registry(reg) == body
    assert (reg.federation, reg.version, reg.issued_at, reg.next_update) == (
        "test-federation", 3, 1_767_225_600, 1_767_830_400)
    assert [(m.member_id, m.role, m.added_in_version, m.keys_since_version)
            for m in reg.members] == [("test-centre", "centre", 1, 2),
                                      ("test-researcher", "researcher", 2, 2)]
    assert reg.member("test-researcher").cert_serial == 2**158 + 7
    assert reg.member("test-centre").identity == identity("centre").public


def test_permit_body_vector():
    body = bytes.fromhex(VECTORS["documents"]["permit"]["body"])
    p = decode_permit(body)
    assert encode_permit(p) == body
    assert p.permit_id == "permit-2026-0001"
    assert p.researcher == identity("researcher").public
    assert p.allowed_analyses == ("count", "kaplan_meier")
    assert p.allowed_fields == ("sex", "incidence_date")
    assert (p.min_cell_count, p.epsilon, p.allow_exact_dates) == (10, 1.25, True)
    assert (p.not_before, p.not_after, p.issued_at) == (1_767_225_600, 1_798_761_600,
                                                        1_767_225_000)
    assert p.data_holders == ("test-centre",)


def test_revocation_list_body_vector():
    body = bytes.fromhex(VECTORS["documents"]["revocations"]["body"])
    rl = decode_revocations(body)
    assert encode_revocations(rl) == body
    assert rl.version == 4
    assert rl.permit_revoked("permit-2025-0009", "").reason == "ended"
    assert rl.key_revoked(["cd" * 32]).member_id == "old-centre"
    assert rl.keys[0].cert_serial == 99
