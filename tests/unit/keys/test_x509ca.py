"""The federation root: certificates, revocation lists and root-signed documents, on real files."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from oncofed.keys import tls, x509ca
from oncofed.keys.errors import InvalidMessage, KeyFileError, TrustError
from oncofed.keys.secrets import SecretFileError

PASS = b"correct horse battery staple"
TAG = "oncofed/registry/v1"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One root for the read-only tests (documents, identity parsing)."""
    return x509ca.create_root(tmp_path_factory.mktemp("root") / "ca", PASS)


@pytest.fixture
def ca(tmp_path):
    return x509ca.create_root(tmp_path / "ca", PASS)


def issue(ca, tmp_path, role="centre", member_id="centre-a", **kwargs):
    key_path, csr_path = x509ca.new_member_tls_key(
        tmp_path / f"{role}-{member_id}", role, member_id)
    return key_path, ca.sign_csr(csr_path.read_bytes(), role, member_id, **kwargs)


# --- the root ---------------------------------------------------------------------------------

def test_create_root_writes_an_encrypted_private_key_and_a_ca_certificate(ca, tmp_path):
    key_file = tmp_path / "ca" / x509ca.ROOT_KEY_FILE
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    box = json.loads(key_file.read_bytes())
    assert box["format"] == "oncofed-passphrase-box/v1"
    assert box["label"] == "federation root key"
    assert box["kdf"]["opslimit"] >= 2 and box["kdf"]["memlimit"] >= 64 * 1024 * 1024  # argon2id, not PBKDF2
    assert b"PRIVATE KEY" not in key_file.read_bytes()
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature
    der = cert.public_bytes(serialization.Encoding.DER)
    assert ca.fingerprint == hashlib.sha256(der).hexdigest()
    assert ca.fingerprint == x509ca.cert_fingerprint(ca.cert_pem)


def test_create_root_refuses_to_overwrite(ca, tmp_path):
    with pytest.raises(x509ca.RootCAError, match="refusing to overwrite"):
        x509ca.create_root(tmp_path / "ca", PASS)


def test_create_root_needs_a_passphrase(tmp_path):
    with pytest.raises(x509ca.RootCAError, match="passphrase"):
        x509ca.create_root(tmp_path / "ca", b"")


def test_load_with_the_right_passphrase_gives_the_same_root(ca, tmp_path):
    again = x509ca.RootCA.load(tmp_path / "ca", PASS)
    assert again.fingerprint == ca.fingerprint


def test_wrong_passphrase_is_a_clear_error(ca, tmp_path):
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        x509ca.RootCA.load(tmp_path / "ca", b"not the passphrase")


def test_root_key_readable_by_others_is_refused(ca, tmp_path):
    os.chmod(tmp_path / "ca" / x509ca.ROOT_KEY_FILE, 0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        x509ca.RootCA.load(tmp_path / "ca", PASS)


# --- leaf certificates ------------------------------------------------------------------------

def test_signed_centre_certificate_carries_identity_loopback_names_and_both_usages(ca, tmp_path):
    _, pem = issue(ca, tmp_path)
    assert x509ca.cert_identity(pem) == ("centre", "centre-a")
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["oncofed://centre/centre-a"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=366)
    [entry] = ca.issued()
    assert (entry.serial, entry.role, entry.member_id) == (cert.serial_number, "centre", "centre-a")
    assert entry.fingerprint == x509ca.cert_fingerprint(pem)
    index = json.loads((tmp_path / "ca" / x509ca.INDEX_FILE).read_text())
    assert index["issued"][0]["fingerprint"] == entry.fingerprint


def test_researcher_gets_no_host_names_and_hosts_can_be_chosen(ca, tmp_path):
    _, pem = issue(ca, tmp_path, "researcher", "alice")
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    _, pem = issue(ca, tmp_path, "hub", "hub", dns_names=["hub.example.org"], ip_addresses=[])
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == []


@pytest.mark.parametrize(("role", "member_id", "days", "match"), [
    ("centre", "centre-a", 367, "1-366 days"),
    ("centre", "centre-a", 0, "1-366 days"),
    ("admin", "centre-a", 30, "role must be"),
    ("centre", "Centre A/../x", 30, "member id"),
])
def test_sign_csr_refuses_bad_requests(ca, tmp_path, role, member_id, days, match):
    _, csr_path = x509ca.new_member_tls_key(tmp_path / "m", "centre", "centre-a")
    with pytest.raises(TrustError, match=match):
        ca.sign_csr(csr_path.read_bytes(), role, member_id, days=days)


def test_sign_csr_refuses_a_csr_made_for_another_identity(ca, tmp_path):
    _, csr_path = x509ca.new_member_tls_key(tmp_path / "m", "researcher", "mallory")
    with pytest.raises(x509ca.CertificateError, match="made for"):
        ca.sign_csr(csr_path.read_bytes(), "hub", "hub")


def test_sign_csr_refuses_a_csr_whose_signature_fails(ca, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    # Swap in another public key: the request no longer matches its own signature.
    old = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    new = other.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    pos = bytes(der).index(old)
    der[pos:pos + len(old)] = new
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(x509ca.CertificateError, match="signature"):
        ca.sign_csr(forged, "centre", "centre-a")


def test_member_key_can_be_encrypted_and_is_private(tmp_path):
    key_path, _ = x509ca.new_member_tls_key(tmp_path / "m", "hub", "hub", b"tls-pass")
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in key_path.read_bytes()
    assert tls.load_tls_key(key_path, b"tls-pass").startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(KeyFileError, match="passphrase required"):
        tls.load_tls_key(key_path)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        tls.load_tls_key(key_path, b"nope")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        x509ca.new_member_tls_key(tmp_path / "m", "hub", "hub")
    os.chmod(key_path, 0o640)
    with pytest.raises(SecretFileError):
        tls.load_tls_key(key_path, b"tls-pass")


def _self_signed(uris):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if uris is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("uris", [
    None, [], ["https://centre/centre-a"], ["oncofed://centre/a", "oncofed://hub/hub"],
    ["oncofed://admin/root"], ["oncofed://centre/"], ["oncofed://centre/a/b"],
])
def test_cert_identity_refuses_anything_but_one_well_formed_identity(uris):
    with pytest.raises(x509ca.CertificateError):
        x509ca.cert_identity(_self_signed(uris))


def test_cert_identity_refuses_garbage():
    with pytest.raises(x509ca.CertificateError):
        x509ca.cert_identity(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_tls_material_checks_catch_mismatched_keys_and_foreign_roots(ca, root, tmp_path):
    key_path, pem = issue(ca, tmp_path)
    key_pem = tls.load_tls_key(key_path)
    assert tls.check_tls_material(pem, key_pem, ca.cert_pem).member_id == "centre-a"
    other_key, _ = issue(ca, tmp_path, "centre", "centre-b")
    with pytest.raises(tls.TlsConfigError, match="does not belong"):
        tls.server_credentials(pem, tls.load_tls_key(other_key), ca.cert_pem)
    with pytest.raises(tls.TlsConfigError, match="not issued by this federation root"):
        tls.channel_credentials(pem, key_pem, root.cert_pem)
    cert_path = tmp_path / "cert.pem"
    cert_path.write_bytes(pem)
    (tmp_path / "root.pem").write_bytes(ca.cert_pem)
    files = tls.load_tls_files(cert_path, key_path, tmp_path / "root.pem",
                               root_fingerprint=ca.fingerprint.upper())
    assert files.key_pem == key_pem
    with pytest.raises(tls.TlsConfigError, match="pinned"):
        tls.load_tls_files(cert_path, key_path, tmp_path / "root.pem",
                           root_fingerprint=root.fingerprint)


# --- revocation -------------------------------------------------------------------------------

def test_revoked_serial_appears_in_a_verified_crl_with_a_growing_number(ca, tmp_path):
    _, pem = issue(ca, tmp_path)
    serial = x509ca.cert_info(pem).serial
    first = x509ca.load_crl(ca.crl_pem(), ca.cert_pem)
    assert first.serials == frozenset()
    ca.revoke(serial, "keyCompromise")
    ca.revoke(serial)  # revoking twice is harmless
    second = x509ca.load_crl(ca.crl_pem(next_update_days=3), ca.cert_pem)
    assert second.serials == frozenset({serial}) == ca.revoked_serials()
    assert second.number > first.number
    assert second.next_update - second.last_update == dt.timedelta(days=3)
    assert x509ca.load_crl_serials(ca.crl_pem(), ca.cert_pem) == {serial}
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise)


def test_revoke_refuses_unknown_serials_and_reasons(ca, tmp_path):
    _, pem = issue(ca, tmp_path)
    with pytest.raises(x509ca.RootCAError, match="not issued"):
        ca.revoke(12345)
    with pytest.raises(x509ca.RootCAError, match="reason"):
        ca.revoke(x509ca.cert_info(pem).serial, "because")


def test_crl_from_another_root_is_refused(ca, root):
    with pytest.raises(x509ca.CrlError, match="not signed by the federation root"):
        x509ca.load_crl_serials(ca.crl_pem(), root.cert_pem)


def test_tampered_crl_is_refused(ca, tmp_path):
    """Dropping a serial from a signed CRL (to un-revoke a key) breaks its signature."""
    _, pem = issue(ca, tmp_path)
    serial = x509ca.cert_info(pem).serial
    ca.revoke(serial)
    der = bytearray(x509.load_pem_x509_crl(ca.crl_pem()).public_bytes(serialization.Encoding.DER))
    raw = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    pos = bytes(der).index(raw)
    der[pos + len(raw) - 1] ^= 0x01  # still well-formed DER, now names another serial
    tampered = x509.load_der_x509_crl(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(x509ca.CrlError):
        x509ca.load_crl_serials(tampered, ca.cert_pem)


# --- root-signed documents --------------------------------------------------------------------

def test_document_round_trip(root):
    doc = root.sign_document(TAG, b'{"version": 3}')
    assert doc.startswith(b"ONCOFED-ROOTDOC-1")
    assert x509ca.verify_root_document(root.cert_pem, TAG, doc) == b'{"version": 3}'
    empty = root.sign_document(TAG, b"")
    assert x509ca.verify_root_document(root.cert_pem, TAG, empty) == b""


def test_document_with_another_tag_is_refused(root):
    doc = root.sign_document("oncofed/permit/v1", b"body")
    with pytest.raises(x509ca.RootDocumentError):
        x509ca.verify_root_document(root.cert_pem, TAG, doc)


def test_document_signed_by_another_root_is_refused(root, ca):
    doc = ca.sign_document(TAG, b"body")
    with pytest.raises(x509ca.RootDocumentError):
        x509ca.verify_root_document(root.cert_pem, TAG, doc)


_DOCS: dict[str, bytes] = {}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_is_refused(root, data):
    doc = _DOCS.setdefault(root.fingerprint, root.sign_document(TAG, b"registry body " * 4))
    bit = data.draw(st.integers(0, len(doc) * 8 - 1))
    flipped = bytearray(doc)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(x509ca.RootDocumentError):
        x509ca.verify_root_document(root.cert_pem, TAG, bytes(flipped))


@pytest.mark.parametrize("mangle", [
    lambda d: d[:-1], lambda d: d + b"\x00", lambda d: b"", lambda d: d[:20],
    lambda d: b"ONCOFED-ROOTDOC-2" + d[17:],
])
def test_truncated_extended_or_foreign_framing_is_refused(root, mangle):
    doc = root.sign_document(TAG, b"body")
    with pytest.raises(x509ca.RootDocumentError):
        x509ca.verify_root_document(root.cert_pem, TAG, mangle(doc))


def test_document_signature_is_not_malleable(root):
    """(r, n - s) is an equally valid ECDSA signature; it must not verify, so every document has
    one encoding and its hash can name it."""
    doc = root.sign_document(TAG, b"body")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    s = int.from_bytes(doc[-32:], "big")
    twin = doc[:-32] + (n - s).to_bytes(32, "big")
    with pytest.raises(x509ca.RootDocumentError):
        x509ca.verify_root_document(root.cert_pem, TAG, twin)


def test_verification_failures_are_opaque_and_of_one_type(root):
    errors = []
    for cert, data in [(root.cert_pem, b"junk"), (b"not a cert", root.sign_document(TAG, b"x"))]:
        with pytest.raises(x509ca.RootDocumentError) as info:
            x509ca.verify_root_document(cert, TAG, data)
        errors.append(str(info.value))
    assert len(set(errors)) == 1
    assert issubclass(x509ca.RootDocumentError, InvalidMessage)


def test_sign_document_refuses_bad_tags(root):
    for tag in ["", "has space", "x" * 256, "ünïcode"]:
        with pytest.raises(x509ca.RootCAError):
            root.sign_document(tag, b"body")
