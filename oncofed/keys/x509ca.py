"""The federation root: an offline X.509 CA that certifies every member's TLS key and signs
federation documents (registry, permits, revocation lists).

Why X.509 at all: gRPC's mutual TLS speaks only X.509, so the root that admits a hospital to the
network must be a CA. Identity lives in one place — the SAN URI `oncofed://<role>/<member_id>` — and
the rest of oncofed reads it through `cert_identity`, never from the subject or common name.

Directory layout (the CA directory should itself be on the authority's offline machine):
    root.key       ECDSA P-256 key (PKCS#8) in an argon2id + SecretBox passphrase box, mode 0600
    root.cert.pem  self-signed CA certificate (what nodes pin by SHA-256 fingerprint)
    ca-index.json  issued certificates, revocations and the CRL number (public, not secret)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from oncofed.keys.errors import InvalidMessage, KeyFileError, TrustError
from oncofed.keys.keystore import passphrase_box, passphrase_unbox
from oncofed.keys.secrets import check_private_mode
from oncofed.keys.tls import (
    ROLES,
    URI_SCHEME,
    CertificateError,
    CertInfo,
    CrlError,
    CrlInfo,
    cert_fingerprint,
    cert_identity,
    cert_info,
    check_identity,
    load_crl,
    load_crl_serials,
    new_member_tls_key,
    write_private_file,
)

__all__ = [
    "ROLES", "CertInfo", "CertificateError", "CrlError", "CrlInfo", "IssuedCert", "RootCA",
    "RootCAError", "RootDocumentError", "cert_fingerprint", "cert_identity", "cert_info",
    "create_root", "load_crl", "load_crl_serials", "new_member_tls_key", "verify_root_document",
]

ROOT_KEY_FILE, ROOT_CERT_FILE, INDEX_FILE = "root.key", "root.cert.pem", "ca-index.json"
_ROOT_KEY_LABEL = "federation root key"
MAX_LEAF_DAYS = 366
DOC_MAGIC = b"ONCOFED-ROOTDOC-1"
_TAG = re.compile(r"[\x21-\x7e]{1,255}")
_SKEW = dt.timedelta(minutes=5)  # leaves are backdated so a slightly slow clock still accepts them
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SIG = ec.ECDSA(hashes.SHA256())


class RootCAError(TrustError):
    """The CA directory is missing or inconsistent, the passphrase is wrong, or a request is
    refused."""


class RootDocumentError(InvalidMessage):
    """A root-signed document failed verification. Deliberately says nothing about why."""

    def __init__(self) -> None:
        super().__init__("root-signed document failed verification")


@dataclass(frozen=True)
class IssuedCert:
    """One line of the CA index: what was certified, so it can be listed and revoked later."""

    serial: int
    role: str
    member_id: str
    fingerprint: str
    not_after: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _ski(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def create_root(
    directory: Path, passphrase: bytes, *, common_name: str = "oncofed federation root",
    days: int = 3650,
) -> RootCA:
    """Create the federation root in `directory`. Refuses to overwrite: a second root would
    silently split the federation, since every node pins the first one's fingerprint."""
    if not passphrase:
        raise RootCAError("the federation root key needs a non-empty passphrase")
    if not 1 <= days <= 36500:
        raise RootCAError("root validity must be between 1 and 36500 days")
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (directory / ROOT_CERT_FILE).exists() or (directory / INDEX_FILE).exists():
        raise RootCAError(f"{directory} already holds a federation root; refusing to overwrite")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oncofed"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    # PKCS#8 DER inside an argon2id + SecretBox box: cryptography's PEM encryption uses PBKDF2
    # with 2048 rounds, far too cheap to brute-force for the key the whole federation trusts.
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    )
    write_private_file(directory / ROOT_KEY_FILE, passphrase_box(key_der, passphrase, label=_ROOT_KEY_LABEL))
    (directory / ROOT_CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca = RootCA(directory, key, cert, {"format": "oncofed-ca-index-1", "crl_number": 0,
                                       "issued": [], "revoked": []})
    ca._save()
    return ca


class RootCA:
    """An unlocked federation root. Only the authority's offline tooling should ever hold one."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey,
                 cert: x509.Certificate, index: dict) -> None:
        self._dir, self._key, self._cert, self._index = Path(directory), key, cert, index

    @classmethod
    def load(cls, directory: Path, passphrase: bytes) -> RootCA:
        """Unlock the root. A key file others can read is refused: it must be presumed leaked."""
        directory = Path(directory)
        key_path = directory / ROOT_KEY_FILE
        check_private_mode(key_path)
        key_der = passphrase_unbox(key_path.read_bytes(), passphrase, label=_ROOT_KEY_LABEL, path=key_path)
        try:
            key = serialization.load_der_private_key(key_der, None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{key_path}: the protected root key is not a valid key") from None
        try:
            cert = x509.load_pem_x509_certificate((directory / ROOT_CERT_FILE).read_bytes())
            index = json.loads((directory / INDEX_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise RootCAError(f"{directory} is not a complete federation root: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise RootCAError(f"{key_path} does not belong to {ROOT_CERT_FILE}")
        return cls(directory, key, cert, index)

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert_pem)

    def issued(self) -> list[IssuedCert]:
        """Every certificate this root issued, oldest first (for listing and revoking by member)."""
        return [IssuedCert(int(e["serial"], 16), e["role"], e["member_id"], e["fingerprint"],
                           e["not_after"]) for e in self._index["issued"]]

    def revoked_serials(self) -> frozenset[int]:
        return frozenset(int(e["serial"], 16) for e in self._index["revoked"])

    def _save(self) -> None:
        _write_atomic(self._dir / INDEX_FILE, json.dumps(self._index, indent=1).encode())

    def sign_csr(
        self, csr_pem: bytes, role: str, member_id: str, *, days: int = 365,
        dns_names: Sequence[str] | None = None, ip_addresses: Sequence[str] | None = None,
    ) -> bytes:
        """Certify a member's TLS key. Everything in the certificate comes from the authority's
        arguments, never from the CSR (only its key is used), so a CSR cannot smuggle in a role,
        a CA flag or extra names. Hub and centre certificates name localhost/127.0.0.1 by default
        so loopback TLS works; pass dns_names/ip_addresses for real host names."""
        check_identity(role, member_id)
        if not 1 <= days <= MAX_LEAF_DAYS:
            raise RootCAError(f"certificate validity must be 1-{MAX_LEAF_DAYS} days, not {days}")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except (ValueError, TypeError):
            raise CertificateError("not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise CertificateError("the CSR's signature does not verify")
        pub = csr.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name not in (
            "secp256r1", "secp384r1"
        ):
            raise CertificateError("TLS keys must be ECDSA P-256 or P-384")
        uri = f"{URI_SCHEME}{role}/{member_id}"
        try:
            asked = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            other = [u for u in asked.value.get_values_for_type(x509.UniformResourceIdentifier)
                     if u.startswith(URI_SCHEME) and u != uri]
            if other:
                raise CertificateError(f"the CSR was made for {other[0]}, not {uri}")
        except x509.ExtensionNotFound:
            pass
        now = _now()
        not_after = now + dt.timedelta(days=days)
        if not_after > self._cert.not_valid_after_utc:
            raise RootCAError("the certificate would outlive the federation root; use fewer days")
        loopback = role in ("hub", "centre")
        dns = list(dns_names) if dns_names is not None else (["localhost"] if loopback else [])
        ips = list(ip_addresses) if ip_addresses is not None else (
            ["127.0.0.1"] if loopback else [])
        try:
            names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
            names += [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        except ValueError as exc:
            raise CertificateError(f"invalid host name or address: {exc}") from None
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oncofed"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, member_id),
        ])
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self._cert.subject)
            .public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(now - _SKEW).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(_ski(pub), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        self._index["issued"].append({
            "serial": format(cert.serial_number, "x"), "role": role, "member_id": member_id,
            "fingerprint": cert_fingerprint(pem), "not_after": not_after.isoformat(),
        })
        self._save()
        return pem

    def revoke(self, serial: int, reason: str = "unspecified") -> None:
        """Mark an issued certificate revoked; it appears in every CRL made afterwards.
        Unknown serials are refused (a typo must not look like a successful revocation)."""
        by_name = {f.name: f for f in x509.ReasonFlags} | {f.value: f for f in x509.ReasonFlags}
        if reason not in by_name or by_name[reason] is x509.ReasonFlags.remove_from_crl:
            raise RootCAError(f"unknown revocation reason {reason!r}")
        hexs = format(serial, "x")
        if not any(e["serial"] == hexs for e in self._index["issued"]):
            raise RootCAError(f"serial {hexs} was not issued by this root")
        if any(e["serial"] == hexs for e in self._index["revoked"]):
            return
        self._index["revoked"].append({"serial": hexs, "reason": by_name[reason].name,
                                       "revoked_at": _now().isoformat()})
        self._save()

    def crl_pem(self, next_update_days: int = 7) -> bytes:
        """Sign a fresh CRL. Its CRL number is the list's version: it grows with every CRL so a
        node can refuse an older list a hub might replay to hide a revocation."""
        if not 1 <= next_update_days <= MAX_LEAF_DAYS:
            raise RootCAError(f"next update must be 1-{MAX_LEAF_DAYS} days away")
        self._index["crl_number"] += 1
        self._save()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder().issuer_name(self._cert.subject)
            .last_update(now).next_update(now + dt.timedelta(days=next_update_days))
            .add_extension(x509.CRLNumber(self._index["crl_number"]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        for e in self._index["revoked"]:
            entry = (x509.RevokedCertificateBuilder().serial_number(int(e["serial"], 16))
                     .revocation_date(dt.datetime.fromisoformat(e["revoked_at"])))
            if e["reason"] != "unspecified":  # RFC 5280: omit the reason rather than say so
                entry = entry.add_extension(
                    x509.CRLReason(x509.ReasonFlags[e["reason"]]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def sign_document(self, tag: str, body: bytes) -> bytes:
        """Wrap `body` in a root-signed envelope (see `verify_root_document` for the format).
        The signature is stored as fixed-width low-S r‖s, so every document has exactly one valid
        encoding and its SHA-256 can serve as an identifier (e.g. a pinned permit hash)."""
        signed = _frame(tag, body)
        r, s = decode_dss_signature(self._key.sign(signed, _SIG))
        s = min(s, _P256_N - s)
        return signed + r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _frame(tag: str, body: bytes) -> bytes:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise RootCAError("document tag must be 1-255 printable ASCII characters")
    if len(body) >= 2**32:
        raise RootCAError("document body too large")
    t = tag.encode("ascii")
    return DOC_MAGIC + struct.pack(">H", len(t)) + t + struct.pack(">I", len(body)) + body


def verify_root_document(root_cert_pem: bytes, expected_tag: str, data: bytes) -> bytes:
    """Return the body of a root-signed document, after checking the signature and the tag.

    Layout: magic ‖ u16 tag length ‖ tag ‖ u32 body length ‖ body ‖ r (32) ‖ s (32), with the
    ECDSA-P256-SHA256 signature over everything before it. The tag keeps a registry signature from
    verifying as a permit. Every failure raises the same opaque RootDocumentError, so callers
    cannot build an oracle out of the reason."""
    try:
        pub = x509.load_pem_x509_certificate(root_cert_pem).public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name != "secp256r1":
            raise RootDocumentError
        data = bytes(data)
        if len(data) < len(DOC_MAGIC) + 2 + 4 + 64 or not data.startswith(DOC_MAGIC):
            raise RootDocumentError
        pos = len(DOC_MAGIC)
        (tlen,) = struct.unpack_from(">H", data, pos)
        pos += 2 + tlen
        (blen,) = struct.unpack_from(">I", data, pos)
        pos += 4 + blen
        if pos + 64 != len(data):
            raise RootDocumentError
        r = int.from_bytes(data[pos:pos + 32], "big")
        s = int.from_bytes(data[pos + 32:], "big")
        if not (0 < r < _P256_N and 0 < s <= _P256_N // 2):
            raise RootDocumentError
        pub.verify(encode_dss_signature(r, s), data[:pos], _SIG)
        tag = data[len(DOC_MAGIC) + 2:len(DOC_MAGIC) + 2 + tlen]
        if tag != expected_tag.encode("ascii"):
            raise RootDocumentError
        return data[pos - blen:pos]
    except (ValueError, TypeError, struct.error, InvalidSignature, UnicodeError):
        raise RootDocumentError from None
