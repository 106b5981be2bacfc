"""Enrolment requests: how a new member's public keys travel to the offline authority.

Private keys are generated where they will live (`oncofed keys new`, `oncofed hub init`) and never
move. What moves is one file: an Ed25519 envelope (tag `oncofed/enrolment-request/v1`) whose body
is an `EnrolmentRequest` protobuf message holding the role, id, both identity public keys and the
TLS CSR, signed by the new Ed25519 key itself.

That self-signature proves possession of the signing key and binds the CSR and the X25519 key to
it, so nobody can swap one of them in transit without the request failing. It does NOT prove who
sent the file: the authority operator compares the printed fingerprint with the member over an
independent channel (a phone call, a signed letter) before enrolling.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from oncofed.keys import envelope
from oncofed.keys.errors import InvalidMessage, TrustError
from oncofed.keys.identity import Identity, PublicIdentity
from oncofed.keys.registry import ROLE_TO_PB, role_from_pb
from oncofed.keys.tls import cert_identity
from oncofed.v1 import trust_pb2 as pb

TAG_ENROLMENT = "oncofed/enrolment-request/v1"
MAX_REQUEST_BYTES = 64 * 1024
REQUEST_NAME = "enrolment-request.bin"


@dataclass(frozen=True)
class EnrolmentRequest:
    """A verified request: the identity asking to join and the CSR for its TLS certificate."""

    identity: PublicIdentity
    csr_pem: bytes
    created_at: int


def make_request(identity: Identity, csr_pem: bytes, created_at: int) -> bytes:
    """The signed request file's bytes for `identity` and its TLS CSR."""
    body = pb.EnrolmentRequest(
        role=ROLE_TO_PB[identity.role], member_id=identity.member_id,
        ed25519_public_key=identity.public.ed25519, x25519_public_key=identity.public.x25519,
        csr_pem=csr_pem, created_at=created_at,
    ).SerializeToString()
    return envelope.sign(identity, TAG_ENROLMENT, body)


def read_request(data: bytes) -> EnrolmentRequest:
    """Verify a request's self-signature, then return it. Raises TrustError on any failure.

    The body is parsed before the signature is checked — unavoidably, because it carries the key
    that signs it — but nothing from it is returned or used until that check passed.
    """
    try:
        msg = pb.EnrolmentRequest.FromString(
            envelope.unverified_body(data, tag=TAG_ENROLMENT, max_bytes=MAX_REQUEST_BYTES))
        claimed = PublicIdentity(role=role_from_pb(msg.role), member_id=msg.member_id,
                                 ed25519=msg.ed25519_public_key, x25519=msg.x25519_public_key)
        envelope.verify(data, tag=TAG_ENROLMENT, signer=claimed, max_bytes=MAX_REQUEST_BYTES)
    except (InvalidMessage, DecodeError, ValueError):
        raise TrustError("not a valid oncofed enrolment request (format or signature)") from None
    csr = bytes(msg.csr_pem)
    if not csr.startswith(b"-----BEGIN CERTIFICATE REQUEST-----"):
        raise TrustError("enrolment request carries no PEM certificate signing request")
    return EnrolmentRequest(identity=claimed, csr_pem=csr, created_at=msg.created_at)


def check_certificate_matches(request: EnrolmentRequest, cert_pem: bytes) -> None:
    """The certificate the root issued must name the same role and id as the request."""
    if cert_identity(cert_pem) != (request.identity.role, request.identity.member_id):
        raise TrustError("issued certificate does not name the requested role and member id")
