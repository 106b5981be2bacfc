"""The other signed messages of a federated query, as centre, hub and researcher's client all read
them (DESIGN §4 "Flow"): declines, failures after the participant set is fixed, abstentions from
a failed query (so that a retry under a smaller set can be answered, decision D26), and the answer
a centre signs and seals to the researcher (accepts and participant sets: `participants.py`).

Every message is a signed envelope over the exact bytes (oncofed.keys.envelope) with its own type
tag, verified against the federation registry before its body is parsed; a decline or failure
carries a coarse code only. An answer is sealed to the researcher in a context that names the
query, the round and H(S), so it cannot be replayed into another query or participant set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError

from oncofed.errors import OncofedError
from oncofed.keys.envelope import sign, verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity, PublicIdentity
from oncofed.v1 import audit_pb2 as fapb
from oncofed.v1 import federation_pb2 as fpb

DECLINE_TAG = "oncofed/decline/v1"
FAILURE_TAG = "oncofed/failure/v1"
ABSTENTION_TAG = "oncofed/abstention/v1"
ANSWER_TAG = "oncofed/answer/v1"
QUERY_SEAL_CONTEXT = "oncofed/query/v1 to={centre}"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Trailing metadata with which the hub marks a status as its refusal of one reply (Push): the
#: centre then logs it and goes on with its batch. Any other failure — gRPC's own statuses among
#: them (RESOURCE_EXHAUSTED for a message over its limit, UNAVAILABLE, INTERNAL) — is the call's,
#: and the centre reconnects and sends the reply again.
REFUSAL_METADATA = ("oncofed-refused", "reply")


class ProtocolError(OncofedError):
    """A federation message is malformed, forged, misaddressed or inconsistent."""


@dataclass(frozen=True)
class Decline:
    query_hash: bytes
    centre: str
    coarse: str


def sign_decline(identity: Identity, query_hash: bytes, coarse: str) -> bytes:
    body = fpb.DeclineBody(query_hash=query_hash, centre=identity.public.member_id, coarse=coarse)
    return sign(identity, DECLINE_TAG, body.SerializeToString())


def sign_failure(identity: Identity, query_hash: bytes, coarse: str) -> bytes:
    body = fpb.FailureBody(query_hash=query_hash, centre=identity.public.member_id, coarse=coarse)
    return sign(identity, FAILURE_TAG, body.SerializeToString())


@dataclass(frozen=True)
class Abstention:
    """A centre's signed statement that it never released an answer to `query_hash`."""

    query_hash: bytes
    centre: str


def sign_abstention(identity: Identity, query_hash: bytes) -> bytes:
    """The abstention of this centre from `query_hash`. Sign it only through the node store's
    `federation.abstain`, which checks that no answer was released and forbids one afterwards:
    the signature is a promise about the store, not only a message."""
    body = fpb.AbstentionBody(query_hash=query_hash, centre=identity.public.member_id)
    return sign(identity, ABSTENTION_TAG, body.SerializeToString())


def read_abstention(data: bytes, keyring: Mapping[bytes, PublicIdentity], query_hash: bytes) -> Abstention:
    """An abstention from `query_hash`, signed by the registry centre it names; ProtocolError
    for a forged one, one from another centre's key, or one from another query."""
    body = _read(data, ABSTENTION_TAG, fpb.AbstentionBody, "an abstention", keyring, query_hash)
    return Abstention(body.query_hash, body.centre)


def _verified_body(data: bytes, tag: str, keyring: Mapping[bytes, PublicIdentity]) -> tuple[PublicIdentity, bytes]:
    try:
        v = verify_from(data, tag=tag, keyring=dict(keyring), max_bytes=MAX_MESSAGE_BYTES)
    except InvalidMessage:
        raise ProtocolError(f"a {tag} message is not signed by a registry centre") from None
    return v.signer, v.body


_Body = TypeVar("_Body", fpb.DeclineBody, fpb.FailureBody, fpb.AbstentionBody)


def _read(data: bytes, tag: str, message: type[_Body], what: str, keyring: Mapping[bytes, PublicIdentity],
          query_hash: bytes) -> _Body:
    """The body of a centre's signed statement about `query_hash`: verified against the registry,
    parsed, and about this query and by the centre it names (else ProtocolError)."""
    signer, raw = _verified_body(data, tag, keyring)
    try:
        body = message.FromString(raw)
    except DecodeError:
        raise ProtocolError(f"{what} that is malformed") from None
    if body.query_hash != query_hash or body.centre != signer.member_id:
        raise ProtocolError(f"{what} from {signer.member_id} does not match this query")
    return body


def read_decline(data: bytes, keyring: Mapping[bytes, PublicIdentity], query_hash: bytes) -> Decline:
    body = _read(data, DECLINE_TAG, fpb.DeclineBody, "a decline", keyring, query_hash)
    return Decline(body.query_hash, body.centre, body.coarse)


def read_failure(data: bytes, keyring: Mapping[bytes, PublicIdentity], query_hash: bytes) -> Decline:
    body = _read(data, FAILURE_TAG, fpb.FailureBody, "a failure notice", keyring, query_hash)
    return Decline(body.query_hash, body.centre, body.coarse)


AUDIT_HEAD_TAG = "oncofed/audit-head/v1"


def read_audit_head(data: bytes, centre: PublicIdentity | None, centre_id: str) -> fapb.AuditHead:
    """A centre's signed audit head (oncofed.node.audit_heads writes them), verified against the
    centre's registry key; ProtocolError otherwise. For the hub and the client, which keep the
    newest head of each centre as evidence of its log's length."""
    if centre is None:
        raise ProtocolError(f"{centre_id} is not in the registry")
    try:
        v = verify_from(data, tag=AUDIT_HEAD_TAG, keyring={centre.signing_key_id: centre}, max_bytes=4096)
        head = fapb.AuditHead.FromString(v.body)
    except (InvalidMessage, DecodeError):
        raise ProtocolError(f"an audit head that is not {centre_id}'s") from None
    if head.node_id != centre_id:
        raise ProtocolError(f"an audit head of {head.node_id}, not {centre_id}")
    return head


def answer_context(query_hash: bytes, round_: int, digest: bytes) -> str:
    """What a sealed answer is bound to: the query, the round and the participant set."""
    return f"{ANSWER_TAG} q={query_hash.hex()} r={round_} s={digest.hex()}"
