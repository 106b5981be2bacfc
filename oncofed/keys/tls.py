"""The member's side of the federation's X.509 PKI: make a TLS key and CSR, read identities and
revocation lists out of what the root issued, and turn key files into gRPC credentials.

Why here and not in `transport`: only `oncofed.keys` may touch `cryptography`, so the transport asks
this module for parsed facts (role, member id, fingerprint, serial) and ready-made credentials.
The authority's side (signing, revoking, root documents) is `oncofed.keys.x509ca`.

Checks made here at start-up turn mistakes that gRPC would only report as `UNAVAILABLE` on every
call (key not matching the certificate, certificate from another root, expired certificate) into
one clear error before any socket is opened.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oncofed.keys.errors import KeyFileError, TrustError
from oncofed.keys.secrets import check_private_mode, write_private_file

ROLES = frozenset({"centre", "researcher", "hub"})
URI_SCHEME = "oncofed://"
# The same rule as oncofed.keys.identity.MEMBER_ID_RE: ids travel in URIs, file names and logs.
_MEMBER_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


class CertificateError(TrustError):
    """A certificate or CSR is malformed or carries no valid oncofed identity."""


class CrlError(TrustError):
    """A revocation list is malformed or not signed by the pinned root."""


class TlsConfigError(TrustError):
    """TLS files that cannot work together (wrong key, foreign root, expired, unreadable)."""


@dataclass(frozen=True)
class CertInfo:
    """What the transport needs from a peer certificate, parsed once (see `cert_info`)."""

    role: str
    member_id: str
    fingerprint: str
    serial: int
    not_after: dt.datetime


@dataclass(frozen=True)
class CrlInfo:
    """A verified revocation list: its version (CRL number) and freshness window travel with it,
    so a node can refuse an older list and stop trusting a stale one."""

    serials: frozenset[int]
    number: int
    last_update: dt.datetime
    next_update: dt.datetime | None


@dataclass(frozen=True)
class TlsFiles:
    """A member's TLS material in memory: certificate, unencrypted key and the pinned root."""

    cert_pem: bytes
    key_pem: bytes
    root_cert_pem: bytes


def check_identity(role: str, member_id: str) -> None:
    """Refuse identities that could not round-trip through a SAN URI or a file name."""
    if role not in ROLES:
        raise CertificateError(f"role must be one of {sorted(ROLES)}, not {role!r}")
    if not isinstance(member_id, str) or not _MEMBER_ID.fullmatch(member_id):
        raise CertificateError(
            f"member id {member_id!r} must be 2-63 lower-case letters, digits or '-', "
            "starting with a letter or digit"
        )


def new_member_tls_key(
    directory: Path, role: str, member_id: str, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Generate a member's TLS key where it will live (it never travels) and a CSR to send to
    the authority. Returns (key_path, csr_path); refuses to overwrite an existing key."""
    check_identity(role, member_id)
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    key_path = directory / f"tls-{role}-{member_id}.key.pem"
    csr_path = directory / f"tls-{role}-{member_id}.csr.pem"
    write_private_file(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, member_id),
        ]))
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(f"{URI_SCHEME}{role}/{member_id}")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def _load_cert(cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError):
        raise CertificateError("not a PEM X.509 certificate") from None


def cert_fingerprint(cert_pem: bytes) -> str:
    """Hex SHA-256 of the DER certificate: what the registry binds and nodes pin."""
    return hashlib.sha256(
        _load_cert(cert_pem).public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_identity(cert_pem: bytes) -> tuple[str, str]:
    """(role, member_id) from the certificate's single `oncofed://` SAN URI."""
    info = cert_info(cert_pem)
    return info.role, info.member_id


@functools.lru_cache(maxsize=1024)
def cert_info(cert_pem: bytes) -> CertInfo:
    """Identity, fingerprint and serial of a certificate, cached because the transport asks on
    every call. Anything but exactly one well-formed oncofed URI is an error, never a guess."""
    cert = _load_cert(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        raise CertificateError("certificate carries no oncofed identity") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.lower().startswith(URI_SCHEME)]
    if len(uris) != 1:
        raise CertificateError("certificate must carry exactly one oncofed identity")
    role, _, member_id = uris[0][len(URI_SCHEME):].partition("/")
    check_identity(role, member_id)
    return CertInfo(role, member_id, hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        cert.serial_number, cert.not_valid_after_utc)


def load_crl(crl_pem: bytes, root_cert_pem: bytes) -> CrlInfo:
    """Parse a CRL after verifying that the pinned root signed it; nothing is read before."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
        root = x509.load_pem_x509_certificate(root_cert_pem)
    except (ValueError, TypeError):
        raise CrlError("not a PEM revocation list or root certificate") from None
    try:
        pub = root.public_key()
        valid = (isinstance(pub, ec.EllipticCurvePublicKey) and crl.issuer == root.subject
                 and crl.is_signature_valid(pub))
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise CrlError("revocation list is not signed by the federation root")
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise CrlError("revocation list carries no CRL number") from None
    return CrlInfo(frozenset(r.serial_number for r in crl), number,
                   crl.last_update_utc, crl.next_update_utc)


def load_crl_serials(crl_pem: bytes, root_cert_pem: bytes) -> frozenset[int]:
    """Revoked serials from a CRL, verified against the root before anything is read from it."""
    return load_crl(crl_pem, root_cert_pem).serials


def load_tls_key(path: Path, passphrase: bytes | None = None) -> bytes:
    """Read a TLS key file (refused when others can read it) and return it as unencrypted PKCS#8
    PEM in memory, because gRPC cannot take a passphrase."""
    path = Path(path)
    check_private_mode(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), passphrase)
    except TypeError:
        raise KeyFileError(
            f"{path}: passphrase {'not needed' if passphrase else 'required'}") from None
    except ValueError:
        raise KeyFileError(f"{path}: wrong passphrase or not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: TLS keys must be ECDSA")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_tls_files(
    cert_path: Path, key_path: Path, root_cert_path: Path, *, passphrase: bytes | None = None,
    root_fingerprint: str | None = None,
) -> TlsFiles:
    """Load and cross-check a member's TLS files. `root_fingerprint` is the fingerprint pinned at
    enrolment: a swapped root file on disk must not quietly become the new trust anchor."""
    try:
        cert_pem, root_pem = Path(cert_path).read_bytes(), Path(root_cert_path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read TLS files: {exc}") from None
    if root_fingerprint is not None and cert_fingerprint(root_pem) != root_fingerprint.lower():
        raise TlsConfigError(f"{root_cert_path} is not the federation root pinned at enrolment")
    files = TlsFiles(cert_pem, load_tls_key(key_path, passphrase), root_pem)
    check_tls_material(files.cert_pem, files.key_pem, files.root_cert_pem)
    return files


def check_tls_material(cert_pem: bytes, key_pem: bytes, root_cert_pem: bytes) -> CertInfo:
    """Fail early and clearly on what gRPC would report only as UNAVAILABLE at every call."""
    cert, root = _load_cert(cert_pem), _load_cert(root_cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError):
        raise TlsConfigError("TLS key is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsConfigError("the TLS key does not belong to the certificate")
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsConfigError("the certificate was not issued by this federation root") from None
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise TlsConfigError(
            f"the certificate is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; check the clock or renew it")
    return cert_info(cert_pem)


def server_credentials(
    cert_pem: bytes, key_pem: bytes, root_cert_pem: bytes
) -> grpc.ServerCredentials:
    """Server credentials that *require* a client certificate from the federation root
    (mutual TLS): an anonymous or foreign client never reaches a handler."""
    check_tls_material(cert_pem, key_pem, root_cert_pem)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=root_cert_pem, require_client_auth=True)


def channel_credentials(
    cert_pem: bytes, key_pem: bytes, root_cert_pem: bytes
) -> grpc.ChannelCredentials:
    """Client credentials that present our certificate and trust only the federation root
    (never the system's public CAs)."""
    check_tls_material(cert_pem, key_pem, root_cert_pem)
    return grpc.ssl_channel_credentials(
        root_certificates=root_cert_pem, private_key=key_pem, certificate_chain=cert_pem)
