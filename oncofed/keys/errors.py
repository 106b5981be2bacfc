"""The errors oncofed.keys raises, drawn in one place so callers know what to catch.

    OncofedError (oncofed.errors)
    ├── SecretFileError                          a key file is missing or readable by others
    │   └── KeyFileError                         a key file is malformed, or the passphrase is wrong
    ├── InvalidMessage                           ANY failed verify or open — deliberately opaque
    └── TrustError                               a trust document or permit is refused
        ├── NotPinned                            the node has not pinned a federation root yet
        ├── StaleTrust                           registry or revocation list past next-update
        └── PermitRefused                        the permit may not be used here, now

`InvalidMessage` says nothing about *why* a signature or seal failed (wrong key, wrong type tag,
wrong context, one flipped bit, truncation): an attacker probing a node learns one bit, and code
cannot grow a branch that treats one kind of forgery more kindly than another. The trust errors
are for people — a centre admin needs to know that a registry is stale or a permit expired — and
are raised only after the signature checked out, or about documents the admin handed in.
"""

from __future__ import annotations

from oncofed.errors import OncofedError


class SecretFileError(OncofedError):
    """A secret file is missing, malformed or readable by others."""


class KeyFileError(SecretFileError):
    """A private or public key file is malformed, or its passphrase is missing or wrong."""


class InvalidMessage(OncofedError):
    """A signed envelope or sealed message did not verify. Carries no detail, on purpose."""

    def __init__(self, message: str = "message failed verification") -> None:
        super().__init__(message)


class TrustError(OncofedError):
    """A registry, revocation list, enrolment request or permit was refused."""


class NotPinned(TrustError):
    """The node has no federation root pinned, so it can trust nothing yet."""


class StaleTrust(TrustError):
    """The node's registry or revocation list is past its next-update time: stop answering."""


class PermitRefused(TrustError):
    """A permit is unknown, not approved here, revoked, expired or not yet valid."""
