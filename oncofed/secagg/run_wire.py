"""The signed answer of one round of a Flower run, as a centre writes it and the coordinator (the
ServerApp) reads it (docs/flower.md, D25).

It is the query plane's `AnswerBody` under its own envelope tag, `oncofed/run-answer/v1`,
*signed but not sealed*: on Flower the coordinator is the party that sums, so there is no
researcher key to seal to (its `recipient_key_id` stays empty), and the masks keep each centre's
vector from it. The distinct tag keeps a round answer from verifying as a query-plane answer and
back. The coordinator checks the signature against the registry key of the centre whose accept
the Flower node sent, then the query, round, H(S) and lengths, before the vector enters a sum.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from oncofed.keys.envelope import sign, verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity, PublicIdentity
from oncofed.secagg.lanes import ELEMENT_BYTES
from oncofed.secagg.masks import MaskedVector
from oncofed.secagg.wire import MAX_MESSAGE_BYTES, ProtocolError
from oncofed.v1 import federation_pb2 as fpb

RUN_ANSWER_TAG = "oncofed/run-answer/v1"


def sign_run_answer(identity: Identity, masked: MaskedVector, *, n_values: int, n_flags: int,
                    audit_head: bytes = b"") -> bytes:
    """The centre's signed answer carrying its masked vector of one round."""
    if n_values + n_flags != len(masked):
        raise ValueError("n_values + n_flags must be the masked vector's length")
    body = fpb.AnswerBody(tag=RUN_ANSWER_TAG, query_hash=bytes.fromhex(masked.query_hash), round=masked.round,
                          participants_digest=masked.set_digest, centre=identity.public.member_id,
                          n_values=n_values, n_flags=n_flags, vector=masked.data, audit_head=audit_head)
    return sign(identity, RUN_ANSWER_TAG, body.SerializeToString())


def read_run_answer(data: bytes, *, keyring: Mapping[bytes, PublicIdentity], centre: str, query_hash: bytes,
                    round_: int, set_digest: bytes, n_values: int, n_flags: int) -> MaskedVector:
    """Verify `centre`'s answer to round `round_` of the run `query_hash` under H(S) `set_digest`
    with this layout; ProtocolError names what does not fit (never a value)."""
    try:
        v = verify_from(bytes(data), tag=RUN_ANSWER_TAG, keyring=dict(keyring), max_bytes=MAX_MESSAGE_BYTES)
    except InvalidMessage:
        raise ProtocolError(f"the round answer from {centre} is not signed by a registry centre") from None
    if v.signer.role != "centre" or v.signer.member_id != centre:
        raise ProtocolError(f"the round answer for {centre} is signed by {v.signer.role} {v.signer.member_id}")
    try:
        body = fpb.AnswerBody.FromString(v.body)
    except DecodeError:
        raise ProtocolError(f"a malformed round answer from {centre}") from None
    if (body.tag != RUN_ANSWER_TAG or body.query_hash != query_hash or body.round != round_
            or body.participants_digest != set_digest or body.centre != centre):
        raise ProtocolError(f"the answer from {centre} names another run, round or participant set")
    if (body.n_values, body.n_flags) != (n_values, n_flags) or len(body.vector) != ELEMENT_BYTES * (n_values + n_flags):
        raise ProtocolError(f"the answer from {centre} has the wrong length for this round's analysis")
    return MaskedVector(centre, query_hash.hex(), round_, set_digest, bytes(body.vector))
