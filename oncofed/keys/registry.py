"""The federation registry and the revocation list: root-signed, versioned, with a next-update time.

Both documents are protobuf messages (protos/oncofed/v1/trust.proto) serialised once by the
authority and carried inside a root-signed document (`x509ca.RootCA.sign_document`, tags
`oncofed/registry/v1` and `oncofed/revocations/v1`). A receiver verifies the root signature over
the exact bytes first, then parses, then checks that the document names the same root (so a
document from one federation cannot be replayed into another that shares nothing but a format).

Version and next-update are what make the hub harmless here: a node keeps the highest version it
accepted, refuses anything older (a hub cannot replay the registry from before a revocation), and
stops answering when its copy is stale (a hub cannot withhold a newer one forever).

This module is the serde layer for these documents: the rest of oncofed sees `Registry`,
`Member` and `RevocationList`, never protobuf classes.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import DecodeError

from oncofed.keys.errors import TrustError
from oncofed.keys.identity import PublicIdentity, key_fingerprint
from oncofed.keys.x509ca import verify_root_document
from oncofed.v1 import trust_pb2 as pb

TAG_REGISTRY = "oncofed/registry/v1"
TAG_REVOCATIONS = "oncofed/revocations/v1"
ROLE_TO_PB = {"centre": pb.MEMBER_ROLE_CENTRE, "researcher": pb.MEMBER_ROLE_RESEARCHER,
              "hub": pb.MEMBER_ROLE_HUB}
ROLE_FROM_PB = {v: k for k, v in ROLE_TO_PB.items()}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DocumentSigner(Protocol):
    """What publishing needs from the root (x509ca.RootCA satisfies it)."""

    @property
    def fingerprint(self) -> str: ...

    def sign_document(self, tag: str, body: bytes) -> bytes: ...


def now() -> int:
    """Seconds since the epoch, UTC: the one clock trust documents use."""
    return int(time.time())


def iso(ts: int) -> str:
    """A Unix time as people read it (UTC, to the second)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def check_hex64(value: str, what: str) -> str:
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{what} must be 64 lower-case hex characters")
    return value


def role_from_pb(value: int) -> str:
    role = ROLE_FROM_PB.get(value)  # type: ignore[call-overload]  # enum values are ints
    if role is None:
        raise ValueError(f"unknown member role {value}")
    return str(role)


@dataclass(frozen=True)
class Member:
    """One registry entry: a member's identity keys bound to its current TLS certificate."""

    identity: PublicIdentity
    cert_fingerprint: str
    cert_serial: int
    added_in_version: int
    keys_since_version: int

    @property
    def member_id(self) -> str:
        return self.identity.member_id

    @property
    def role(self) -> str:
        return self.identity.role

    def to_json(self) -> dict[str, object]:
        return {**self.identity.to_json(), "cert_fingerprint": self.cert_fingerprint,
                "cert_serial": format(self.cert_serial, "x"),
                "added_in_version": self.added_in_version,
                "keys_since_version": self.keys_since_version}


@dataclass(frozen=True)
class Registry:
    """A verified registry version: who belongs to the federation, until `next_update`."""

    federation: str
    version: int
    issued_at: int
    next_update: int
    root_fingerprint: str
    members: tuple[Member, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.version < 1 or self.next_update <= self.issued_at:
            raise ValueError("registry needs version ≥ 1 and next_update after issued_at")
        check_hex64(self.root_fingerprint, "root fingerprint")
        ids = [m.member_id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("registry lists a member id twice")
        keys = [k for m in self.members for k in (m.identity.ed25519, m.identity.x25519)]
        if len(set(keys)) != len(keys):
            raise ValueError("registry binds one public key to two members or two uses")

    def member(self, member_id: str) -> Member | None:
        return self._by_id.get(member_id)

    def keyring(self, role: str | None = None) -> dict[bytes, PublicIdentity]:
        """Members' identities by signing key id, for `verify_from` and `open_sealed_from` (a
        fresh dict each call: callers may change theirs)."""
        return dict(self._keyrings.get(role, {}))

    # A verified registry never changes (frozen), and the hub asks it for a member or a keyring
    # on every call it serves: at 100 centres, a linear search and a hundred-key keyring per push.
    @functools.cached_property
    def _by_id(self) -> dict[str, Member]:
        return {m.member_id: m for m in self.members}

    @functools.cached_property
    def _keyrings(self) -> dict[str | None, dict[bytes, PublicIdentity]]:
        """Every member's keyring by role, and all members' under None."""
        rings: dict[str | None, dict[bytes, PublicIdentity]] = {None: {}}
        for m in self.members:
            rings[None][m.identity.signing_key_id] = m.identity
            rings.setdefault(m.role, {})[m.identity.signing_key_id] = m.identity
        return rings

    def is_stale(self, at: int) -> bool:
        return at >= self.next_update


@dataclass(frozen=True)
class RegistryChanges:
    """What a new registry version changes, to show a centre admin before anything else."""

    added: tuple[Member, ...]
    removed: tuple[Member, ...]
    rekeyed: tuple[Member, ...]

    def to_json(self) -> dict[str, list[dict[str, object]]]:
        return {k: [m.to_json() for m in getattr(self, k)] for k in ("added", "removed", "rekeyed")}


def diff(old: Registry | None, new: Registry) -> RegistryChanges:
    """Members added, removed and given new keys or certificate between two versions."""
    before = {m.member_id: m for m in old.members} if old else {}
    after = {m.member_id: m for m in new.members}
    return RegistryChanges(
        added=tuple(m for k, m in after.items() if k not in before),
        removed=tuple(m for k, m in before.items() if k not in after),
        rekeyed=tuple(m for k, m in after.items() if k in before and (
            before[k].identity != m.identity or before[k].cert_fingerprint != m.cert_fingerprint)),
    )


def _member_to_pb(m: Member) -> pb.Member:
    return pb.Member(member_id=m.member_id, role=ROLE_TO_PB[m.role],
                     cert_fingerprint=m.cert_fingerprint, cert_serial=str(m.cert_serial),
                     ed25519_public_key=m.identity.ed25519, x25519_public_key=m.identity.x25519,
                     added_in_version=m.added_in_version,
                     keys_since_version=m.keys_since_version)


def _member_from_pb(p: pb.Member) -> Member:
    return Member(
        identity=PublicIdentity(role=role_from_pb(p.role), member_id=p.member_id,
                                ed25519=p.ed25519_public_key, x25519=p.x25519_public_key),
        cert_fingerprint=check_hex64(p.cert_fingerprint, "certificate fingerprint"),
        cert_serial=int(p.cert_serial), added_in_version=p.added_in_version,
        keys_since_version=p.keys_since_version)


def encode_registry(reg: Registry) -> bytes:
    """Serialise once, members sorted by id; these bytes are what the root signs."""
    return pb.Registry(
        federation=reg.federation, version=reg.version, issued_at=reg.issued_at,
        next_update=reg.next_update, root_fingerprint=reg.root_fingerprint,
        members=[_member_to_pb(m) for m in sorted(reg.members, key=lambda m: m.member_id)],
    ).SerializeToString()


def decode_registry(body: bytes) -> Registry:
    """Parse a registry body that has ALREADY been verified; refuse anything inconsistent."""
    try:
        p = pb.Registry.FromString(body)
        return Registry(federation=p.federation, version=p.version, issued_at=p.issued_at,
                        next_update=p.next_update, root_fingerprint=p.root_fingerprint,
                        members=tuple(_member_from_pb(m) for m in p.members))
    except (DecodeError, ValueError) as exc:
        raise TrustError(f"registry is signed by the root but malformed: {exc}") from None


def sign_registry(root: DocumentSigner, reg: Registry) -> bytes:
    if reg.root_fingerprint != root.fingerprint:
        raise ValueError("registry names another root")
    return root.sign_document(TAG_REGISTRY, encode_registry(reg))


def verify_registry(root_cert_pem: bytes, root_fingerprint: str, data: bytes) -> Registry:
    """Verify a root-signed registry over its exact bytes, then parse it.

    InvalidMessage when the signature or tag fails; TrustError when a correctly signed document
    is malformed or names another root.
    """
    reg = decode_registry(verify_root_document(root_cert_pem, TAG_REGISTRY, data))
    if reg.root_fingerprint != root_fingerprint:
        raise TrustError("registry names another federation root")
    return reg


@dataclass(frozen=True)
class RevokedPermit:
    permit_id: str
    permit_sha256: str
    revoked_at: int
    reason: str


@dataclass(frozen=True)
class RevokedKey:
    member_id: str
    ed25519_sha256: str
    x25519_sha256: str
    cert_fingerprint: str
    cert_serial: int
    revoked_at: int
    reason: str


@dataclass(frozen=True)
class RevocationList:
    """A verified revocation-list version. Entries are never removed from later versions."""

    version: int
    issued_at: int
    next_update: int
    root_fingerprint: str
    permits: tuple[RevokedPermit, ...] = ()
    keys: tuple[RevokedKey, ...] = ()

    def __post_init__(self) -> None:
        if self.version < 1 or self.next_update <= self.issued_at:
            raise ValueError("revocation list needs version ≥ 1 and next_update after issued_at")
        check_hex64(self.root_fingerprint, "root fingerprint")

    def permit_revoked(self, permit_id: str, permit_sha256: str) -> RevokedPermit | None:
        return next((r for r in self.permits
                     if r.permit_sha256 == permit_sha256 or r.permit_id == permit_id), None)

    def key_revoked(self, fingerprints: Iterable[str]) -> RevokedKey | None:
        """The entry withdrawing any of these key or certificate fingerprints, if one does."""
        wanted = {f for f in fingerprints if f}
        return next((k for k in self.keys if wanted & {
            k.ed25519_sha256, k.x25519_sha256, k.cert_fingerprint}), None)

    def member_revoked(self, member: Member) -> RevokedKey | None:
        return self.key_revoked((key_fingerprint(member.identity.ed25519),
                                 key_fingerprint(member.identity.x25519),
                                 member.cert_fingerprint))

    def is_stale(self, at: int) -> bool:
        return at >= self.next_update


def encode_revocations(rl: RevocationList) -> bytes:
    return pb.RevocationList(
        version=rl.version, issued_at=rl.issued_at, next_update=rl.next_update,
        root_fingerprint=rl.root_fingerprint,
        permits=[pb.RevokedPermit(permit_id=r.permit_id, permit_sha256=r.permit_sha256,
                                  revoked_at=r.revoked_at, reason=r.reason) for r in rl.permits],
        keys=[pb.RevokedKey(member_id=k.member_id, ed25519_sha256=k.ed25519_sha256,
                            x25519_sha256=k.x25519_sha256, cert_fingerprint=k.cert_fingerprint,
                            cert_serial=str(k.cert_serial), revoked_at=k.revoked_at,
                            reason=k.reason) for k in rl.keys],
    ).SerializeToString()


def decode_revocations(body: bytes) -> RevocationList:
    """Parse a revocation-list body that has ALREADY been verified."""
    try:
        p = pb.RevocationList.FromString(body)
        return RevocationList(
            version=p.version, issued_at=p.issued_at, next_update=p.next_update,
            root_fingerprint=p.root_fingerprint,
            permits=tuple(RevokedPermit(r.permit_id, check_hex64(r.permit_sha256, "permit hash"),
                                        r.revoked_at, r.reason) for r in p.permits),
            keys=tuple(RevokedKey(k.member_id, k.ed25519_sha256, k.x25519_sha256,
                                  k.cert_fingerprint, int(k.cert_serial or 0), k.revoked_at,
                                  k.reason) for k in p.keys))
    except (DecodeError, ValueError) as exc:
        raise TrustError(f"revocation list is signed by the root but malformed: {exc}") from None


def sign_revocations(root: DocumentSigner, rl: RevocationList) -> bytes:
    if rl.root_fingerprint != root.fingerprint:
        raise ValueError("revocation list names another root")
    return root.sign_document(TAG_REVOCATIONS, encode_revocations(rl))


def verify_revocations(root_cert_pem: bytes, root_fingerprint: str, data: bytes) -> RevocationList:
    """Verify a root-signed revocation list over its exact bytes, then parse it."""
    rl = decode_revocations(verify_root_document(root_cert_pem, TAG_REVOCATIONS, data))
    if rl.root_fingerprint != root_fingerprint:
        raise TrustError("revocation list names another federation root")
    return rl
