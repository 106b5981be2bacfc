"""Sign-then-seal: a message only one recipient can read, that proves who sent it, for what.

A libsodium sealed box is anonymous — anyone can seal to a public key — and a bare signature
inside it could be lifted out and re-sealed to somebody else. So the sender first signs an inner
envelope (tag "oncofed/sealed/v1") whose body binds:

    u16 length of context ‖ context (UTF-8) ‖ recipient key id (SHA-256 of its X25519 key, 32 B)
    ‖ payload

and then seals that envelope to the recipient's X25519 key. Wire format, version 1:

    b"OFS\\x01" ‖ crypto_box_seal(recipient X25519 key, inner signed envelope)

The recipient opens the box, verifies the signature against the sender it expects (or any key of
its keyring), and checks that the context is the one it expected and that the recipient key id is
its own. The context names the message type and instance (e.g. "oncofed/query/v1 q=…"), so a
sealed query can never be replayed as an answer, nor an answer to one query as another's.
Every failure raises the same opaque `InvalidMessage`.
"""

from __future__ import annotations

import struct

from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

from oncofed.keys import envelope
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.identity import Identity, PublicIdentity

MAGIC = b"OFS\x01"
INNER_TAG = "oncofed/sealed/v1"
MAX_CONTEXT_BYTES = 1024


def _context_bytes(context: str) -> bytes:
    raw = context.encode("utf-8")
    if not raw or len(raw) > MAX_CONTEXT_BYTES:
        raise ValueError(f"context must be 1..{MAX_CONTEXT_BYTES} bytes of UTF-8")
    return raw


def seal(payload: bytes, recipient: PublicIdentity, *, sender: Identity, context: str) -> bytes:
    """Sign `payload` as `sender` for `recipient` in `context`, then seal it to `recipient`."""
    ctx = _context_bytes(context)
    inner_body = struct.pack(">H", len(ctx)) + ctx + recipient.box_key_id + bytes(payload)
    inner = envelope._sign_any(sender, INNER_TAG, inner_body)
    return MAGIC + SealedBox(PublicKey(recipient.x25519)).encrypt(inner)


def _unbox(data: bytes, recipient: Identity, max_bytes: int) -> bytes:
    data = bytes(data)
    if len(data) > max_bytes or data[:4] != MAGIC:
        raise InvalidMessage
    try:
        return SealedBox(recipient._box_secret()).decrypt(data[4:])
    except (CryptoError, ValueError, TypeError):
        raise InvalidMessage from None


def _payload(inner_body: bytes, recipient: Identity, context: str) -> bytes:
    expected = _context_bytes(context)
    if len(inner_body) < 2:
        raise InvalidMessage
    (n,) = struct.unpack_from(">H", inner_body, 0)
    ctx = inner_body[2:2 + n]
    key_id = inner_body[2 + n:2 + n + 32]
    if ctx != expected or key_id != recipient.public.box_key_id:
        raise InvalidMessage
    return inner_body[2 + n + 32:]


def open_sealed(data: bytes, *, recipient: Identity, sender: PublicIdentity, context: str,
                max_bytes: int = envelope.DEFAULT_MAX_BYTES) -> bytes:
    """The payload, if `data` was sealed to `recipient` by `sender` in `context`; else
    InvalidMessage."""
    return open_sealed_from(data, recipient=recipient,
                            keyring={sender.signing_key_id: sender}, context=context,
                            max_bytes=max_bytes).body


def open_sealed_from(data: bytes, *, recipient: Identity, keyring: envelope.Keyring,
                     context: str, max_bytes: int = envelope.DEFAULT_MAX_BYTES
                     ) -> envelope.Verified:
    """Like `open_sealed` when any member of `keyring` may be the sender; says which one."""
    inner = _unbox(data, recipient, max_bytes)
    verified = envelope.verify_from(inner, tag=INNER_TAG, keyring=keyring, max_bytes=max_bytes)
    return envelope.Verified(verified.signer, _payload(verified.body, recipient, context))
