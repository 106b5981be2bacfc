"""Regenerate tests/vectors/trust_vectors.json — known-answer vectors for oncofed's signed and
sealed wire formats and trust-document bodies.

    .venv/bin/python tests/vectors/make_trust_vectors.py

THE KEYS HERE ARE PUBLIC TEST KEYS. They are derived from fixed, published seeds
(SHA-256 of "oncofed public test vector seed: <name>") so anyone can reproduce the vectors;
never use them for anything but tests.

Ed25519 signatures are deterministic, so the envelope and enrolment vectors are reproduced
byte for byte by the test; a sealed box uses a random ephemeral key, so the sealed vector is a
fixed ciphertext the test must still open. Regenerating must not change the deterministic
vectors: if it does, the wire format changed — that needs a new format version, not new vectors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from oncofed.keys import envelope, keystore
from oncofed.keys import sealing as seal
from oncofed.keys.enrolment import make_request
from oncofed.keys.identity import Identity
from oncofed.keys.permits import Permit, encode_permit
from oncofed.keys.registry import (
    Member,
    Registry,
    RevocationList,
    RevokedKey,
    RevokedPermit,
    encode_registry,
    encode_revocations,
)

OUT = Path(__file__).with_name("trust_vectors.json")
ROOT_FP = hashlib.sha256(b"oncofed public test vector: root certificate").hexdigest()
CERT_FP = hashlib.sha256(b"oncofed public test vector: member certificate").hexdigest()
# Not a real CSR: enrolment only checks the PEM header; the CA checks the rest.
CSR = (b"-----BEGIN CERTIFICATE REQUEST-----\nb25jb2ZlZCB0ZXN0IHZlY3Rvcg==\n"
       b"-----END CERTIFICATE REQUEST-----\n")
KEY_PASSPHRASE = "oncofed public test vector passphrase"


def seed(name: str) -> bytes:
    return hashlib.sha256(f"oncofed public test vector seed: {name}".encode()).digest()


def vector_identity(role: str, member_id: str) -> Identity:
    return Identity(role, member_id, seed(f"{member_id}/ed25519"), seed(f"{member_id}/x25519"))


KEYS = {"centre": vector_identity("centre", "test-centre"),
        "researcher": vector_identity("researcher", "test-researcher")}


def documents() -> dict[str, dict[str, str]]:
    c, r = KEYS["centre"], KEYS["researcher"]
    reg = Registry(
        federation="test-federation", version=3, issued_at=1_767_225_600,
        next_update=1_767_830_400, root_fingerprint=ROOT_FP,
        members=(Member(c.public, CERT_FP, 0x1234ABCD, 1, 2),
                 Member(r.public, CERT_FP[::-1], 2**158 + 7, 2, 2)))
    permit = Permit(
        permit_id="permit-2026-0001", root_fingerprint=ROOT_FP, researcher=r.public,
        researcher_cert_fingerprint=CERT_FP[::-1], project_title="Test vector project",
        allowed_analyses=("count", "kaplan_meier"), allowed_fields=("sex", "incidence_date"),
        min_cell_count=10, epsilon=1.25, not_before=1_767_225_600, not_after=1_798_761_600,
        issued_at=1_767_225_000, data_holders=("test-centre",), allow_exact_dates=True)
    rl = RevocationList(
        version=4, issued_at=1_767_225_600, next_update=1_767_830_400, root_fingerprint=ROOT_FP,
        permits=(RevokedPermit("permit-2025-0009", "ab" * 32, 1_767_000_000, "ended"),),
        keys=(RevokedKey("old-centre", "cd" * 32, "ef" * 32, "01" * 32, 99, 1_767_100_000,
                         "key compromise"),))
    return {"registry": {"body": encode_registry(reg).hex()},
            "permit": {"body": encode_permit(permit).hex()},
            "revocations": {"body": encode_revocations(rl).hex()}}


def main() -> None:
    c, r = KEYS["centre"], KEYS["researcher"]
    envelopes = [
        {"signer": "centre", "tag": tag, "body": body.hex(),
         "envelope": envelope.sign(c, tag, body).hex()}
        for tag, body in [("oncofed/query/v1", b"query body"), ("oncofed/test/v1", b""),
                          ("oncofed/query", b"/v1query body")]]
    context = "oncofed/answer/v1 query=00ff round=1"
    sealed = seal.seal(b"sealed payload", r.public, sender=c, context=context)
    key_file = keystore.encode_private(r, KEY_PASSPHRASE.encode(),
                                       opslimit=keystore.OPSLIMIT_FAST_FOR_TESTS,
                                       memlimit=keystore.MEMLIMIT_FAST_FOR_TESTS)
    vectors = {
        "comment": "Known-answer vectors for oncofed trust formats. PUBLIC TEST KEYS from fixed "
                   "seeds (see make_trust_vectors.py); never use them outside tests.",
        "keys": {name: {"role": i.role, "member_id": i.member_id,
                        "ed25519_seed": i._secret_material()[0].hex(),
                        "x25519_secret": i._secret_material()[1].hex(),
                        "ed25519_public": i.public.ed25519.hex(),
                        "x25519_public": i.public.x25519.hex()} for name, i in KEYS.items()},
        "envelopes": envelopes,
        "sealed": [{"sender": "centre", "recipient": "researcher", "context": context,
                    "payload": b"sealed payload".hex(), "sealed": sealed.hex()}],
        "enrolment_request": {"identity": "centre", "csr_pem": CSR.decode(),
                              "created_at": 1_767_225_600,
                              "request": make_request(c, CSR, 1_767_225_600).hex()},
        "identity_key_file": {"identity": "researcher", "passphrase": KEY_PASSPHRASE,
                              "file": key_file.decode()},
        "documents": documents(),
    }
    OUT.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
