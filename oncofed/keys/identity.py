"""A member's identity keys: Ed25519 to sign, X25519 to receive sealed messages.

Two keys rather than one converted key: a signature key that is never used for key agreement
(and vice versa) keeps each proof simple, and lets the registry rotate or revoke either alone.

`PublicIdentity` is what the registry publishes and what peers hold; `Identity` adds the private
halves and never shows them — not in `repr`, not in an attribute a logger would pick up. Only
`oncofed.keys` modules touch the private halves (`_sign`, `_box_secret`), through the recipes in
`envelope` and `seal`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

ROLES = ("centre", "researcher", "hub")
MEMBER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
KEY_BYTES = 32


def check_role(role: str) -> str:
    """Refuse a role the federation does not know, so a typo can never create a new kind."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def check_member_id(member_id: str) -> str:
    """Member ids travel in certificates, file names and logs: keep them plain."""
    if not MEMBER_ID_RE.fullmatch(member_id):
        raise ValueError(
            f"member id {member_id!r} must be 2–63 lower-case letters, digits or '-', "
            "starting with a letter or digit"
        )
    return member_id


def key_fingerprint(public_key: bytes) -> str:
    """Hex SHA-256 of a raw public key: how people, permits and revocation lists name a key."""
    return hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True)
class PublicIdentity:
    """The public half of a member's identity, as the registry binds it."""

    role: str
    member_id: str
    ed25519: bytes
    x25519: bytes

    def __post_init__(self) -> None:
        check_role(self.role)
        check_member_id(self.member_id)
        for name in ("ed25519", "x25519"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != KEY_BYTES:
                raise ValueError(f"{name} public key must be {KEY_BYTES} bytes")

    # Computed once per identity (the identity is frozen): every keyring built indexes its
    # members by key id, and each key id is a SHA-256.
    @functools.cached_property
    def signing_key_id(self) -> bytes:
        """SHA-256 of the Ed25519 key: carried in every envelope so a verifier can pick the key."""
        return hashlib.sha256(self.ed25519).digest()

    @functools.cached_property
    def box_key_id(self) -> bytes:
        """SHA-256 of the X25519 key: bound into every sealed message as its recipient."""
        return hashlib.sha256(self.x25519).digest()

    @property
    def signing_fingerprint(self) -> str:
        return key_fingerprint(self.ed25519)

    @property
    def box_fingerprint(self) -> str:
        return key_fingerprint(self.x25519)

    def to_json(self) -> dict[str, str]:
        return {
            "role": self.role, "member_id": self.member_id,
            "ed25519_sha256": self.signing_fingerprint, "x25519_sha256": self.box_fingerprint,
        }


class Identity:
    """A member's private identity keys. Create with `generate`; store with `keystore`."""

    __slots__ = ("_box", "_public", "_signing")

    def __init__(self, role: str, member_id: str, ed25519_seed: bytes,
                 x25519_secret: bytes) -> None:
        if len(ed25519_seed) != KEY_BYTES or len(x25519_secret) != KEY_BYTES:
            raise ValueError(f"identity key material must be two {KEY_BYTES}-byte secrets")
        self._signing = SigningKey(ed25519_seed)
        self._box = PrivateKey(x25519_secret)
        self._public = PublicIdentity(
            role=role, member_id=member_id,
            ed25519=bytes(self._signing.verify_key), x25519=bytes(self._box.public_key),
        )

    @classmethod
    def generate(cls, role: str, member_id: str) -> Identity:
        """Fresh keys from the operating system's CSPRNG (libsodium's randombytes)."""
        return cls(role, member_id, bytes(SigningKey.generate()), bytes(PrivateKey.generate()))

    @property
    def public(self) -> PublicIdentity:
        return self._public

    @property
    def role(self) -> str:
        return self._public.role

    @property
    def member_id(self) -> str:
        return self._public.member_id

    def _sign(self, message: bytes) -> bytes:
        """Detached Ed25519 signature; for `envelope` only."""
        return self._signing.sign(message).signature

    def _box_secret(self) -> PrivateKey:
        """The X25519 private key; for `seal` only."""
        return self._box

    def _secret_material(self) -> tuple[bytes, bytes]:
        """(Ed25519 seed, X25519 secret); for `keystore` only, to write the key file."""
        return bytes(self._signing), bytes(self._box)

    def __repr__(self) -> str:
        return f"Identity({self.role}:{self.member_id}, <private keys>)"


def verify_detached(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (CryptoError, ValueError, TypeError):
        return False
    return True
