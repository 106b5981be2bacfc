"""A member's credentials as one checked object: identity keys, TLS files, the pinned root.

The hub, a node's connector and a researcher's client all dial or serve the federation with the
same three things; loading them together lets one check catch what gRPC would report only as
UNAVAILABLE at every call (a certificate for another member, a root that is not the pinned one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oncofed.keys.errors import TrustError
from oncofed.keys.identity import Identity
from oncofed.keys.keystore import load_identity
from oncofed.keys.tls import TlsFiles, cert_info, load_tls_files


@dataclass(frozen=True)
class MemberCredentials:
    """What a member needs on the wire: its identity (sign, open), its TLS files, the root."""

    identity: Identity
    tls: TlsFiles
    root_fingerprint: str

    @property
    def member_id(self) -> str:
        return self.identity.public.member_id


def load_member_credentials(*, identity_key: Path, tls_key: Path, cert: Path, root_cert: Path,
                            root_fingerprint: str, passphrase: bytes | None = None) -> MemberCredentials:
    """Load and cross-check a member's files; TrustError names what does not fit."""
    identity = load_identity(identity_key, passphrase)
    tls = load_tls_files(cert, tls_key, root_cert, passphrase=passphrase, root_fingerprint=root_fingerprint)
    info = cert_info(tls.cert_pem)
    me = identity.public
    if (info.role, info.member_id) != (me.role, me.member_id):
        raise TrustError(f"{cert} is the certificate of {info.role}/{info.member_id}, not {me.role}/{me.member_id}")
    return MemberCredentials(identity, tls, root_fingerprint.lower())
