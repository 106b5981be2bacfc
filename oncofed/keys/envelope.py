"""Signed envelopes: the one way a member signs a message, and the one way it is verified.

Wire format (version 1; known-answer vectors in tests/vectors/envelope.json pin it):

    offset  size  field
    0       4     magic  b"OFE\\x01"  (oncofed envelope, format 1)
    4       2     n = length of the type tag, big-endian (1..255)
    6       n     type tag, ASCII, e.g. b"oncofed/query/v1"
    6+n     32    signer key id = SHA-256 of the signer's Ed25519 public key
    38+n    4     m = length of the body, big-endian
    42+n    m     body (usually a serialised protobuf message)
    42+n+m  64    Ed25519 signature over every preceding byte (offset 0 .. 42+n+m)

Why this shape: the signature covers the exact bytes that travel, so a receiver verifies before
it parses the body (protobuf encoding is not canonical; nothing is ever re-serialised to check).
The tag is length-prefixed and signed, so a signature made for one message type can never verify
as another — not even when one tag is a prefix of another and the body "moves over". The magic
separates these signatures from anything else the same key ever signs. No trailing bytes are
allowed. Every failure — framing, length, tag, key, signature — raises the same `InvalidMessage`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity, PublicIdentity, verify_detached

MAGIC = b"OFE\x01"
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 32
#: Largest envelope `verify` reads; callers with a smaller transport cap pass their own.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,254}$")
#: Tags only the recipes in this package may use (`seal` signs its inner envelope with these).
RESERVED_PREFIXES = ("oncofed/sealed/",)

Keyring = Mapping[bytes, PublicIdentity]


def keyring(members: Iterable[PublicIdentity]) -> dict[bytes, PublicIdentity]:
    """Index public identities by signing key id, as `verify_from` expects."""
    return {m.signing_key_id: m for m in members}


@dataclass(frozen=True)
class Verified:
    """A verified envelope: who signed it (from the keyring) and the body they signed."""

    signer: PublicIdentity
    body: bytes


def _check_tag(tag: str) -> bytes:
    if not TAG_RE.fullmatch(tag):
        raise ValueError(f"invalid envelope type tag {tag!r}")
    return tag.encode("ascii")


def _frame(tag: bytes, key_id: bytes, body: bytes) -> bytes:
    if len(body) >= 2**32:
        raise ValueError("envelope body too large")
    return b"".join((MAGIC, struct.pack(">H", len(tag)), tag, key_id,
                     struct.pack(">I", len(body)), body))


def _sign_any(signer: Identity, tag: str, body: bytes) -> bytes:
    """Sign without the reserved-tag check; for `seal` only."""
    framed = _frame(_check_tag(tag), signer.public.signing_key_id, bytes(body))
    return framed + signer._sign(framed)


def sign(signer: Identity, tag: str, body: bytes) -> bytes:
    """Sign `body` as a message of type `tag`; return the envelope bytes to send as they are."""
    if tag.startswith(RESERVED_PREFIXES):
        raise ValueError(f"tag {tag!r} is reserved for oncofed.keys.sealing")
    return _sign_any(signer, tag, body)


@dataclass(frozen=True)
class _Parts:
    tag: bytes
    key_id: bytes
    body: bytes
    signed: bytes
    signature: bytes


def _split(data: bytes, max_bytes: int) -> _Parts:
    """Cut an envelope into its fields, checking every length; no field is trusted yet."""
    data = bytes(data)
    if len(data) > max_bytes or len(data) < len(MAGIC) + 2 or data[:4] != MAGIC:
        raise InvalidMessage
    (n,) = struct.unpack_from(">H", data, 4)
    pos = 6 + n
    if n == 0 or len(data) < pos + KEY_ID_BYTES + 4 + SIGNATURE_BYTES:
        raise InvalidMessage
    tag, key_id = data[6:pos], data[pos:pos + KEY_ID_BYTES]
    (m,) = struct.unpack_from(">I", data, pos + KEY_ID_BYTES)
    start = pos + KEY_ID_BYTES + 4
    if len(data) != start + m + SIGNATURE_BYTES:
        raise InvalidMessage
    return _Parts(tag, key_id, data[start:start + m], data[:start + m], data[start + m:])


def verify(data: bytes, *, tag: str, signer: PublicIdentity,
           max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return the body if `data` is an envelope of type `tag` signed by `signer`; else raise
    InvalidMessage. The body has not been parsed by anyone when this returns."""
    return verify_from(data, tag=tag, keyring={signer.signing_key_id: signer},
                       max_bytes=max_bytes).body


def verify_from(data: bytes, *, tag: str, keyring: Keyring,
                max_bytes: int = DEFAULT_MAX_BYTES) -> Verified:
    """Like `verify`, for a message any key of `keyring` (e.g. the registry) may have signed."""
    expected = _check_tag(tag)
    parts = _split(data, max_bytes)
    signer = keyring.get(parts.key_id)
    if signer is None or parts.tag != expected:
        raise InvalidMessage
    if not verify_detached(signer.ed25519, parts.signed, parts.signature):
        raise InvalidMessage
    return Verified(signer, parts.body)


def unverified_signer_key_id(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The key id an envelope *claims* — to pick a key or log a refusal, never to trust."""
    return _split(data, max_bytes).key_id


def unverified_body(data: bytes, *, tag: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The body of an envelope of type `tag` BEFORE any signature check.

    Only for self-signed documents whose body names the key that signs them (an enrolment
    request): the caller must verify with that key right after, and trust nothing until then.
    """
    parts = _split(data, max_bytes)
    if parts.tag != _check_tag(tag):
        raise InvalidMessage
    return parts.body
