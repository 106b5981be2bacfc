"""Identity keys and their files: 0600, optional argon2id + SecretBox, refused when others can read."""

from __future__ import annotations

import base64
import json
import os

import nacl.pwhash
import pytest

from oncofed.keys import envelope, keystore
from oncofed.keys.errors import KeyFileError
from oncofed.keys.identity import Identity, PublicIdentity
from oncofed.keys.secrets import SecretFileError

FAST = {"opslimit": keystore.OPSLIMIT_FAST_FOR_TESTS, "memlimit": keystore.MEMLIMIT_FAST_FOR_TESTS}
PASS = b"a test passphrase"


@pytest.fixture
def ident():
    return Identity.generate("centre", "centre-a")


def test_unencrypted_key_file_round_trips_and_is_0600(tmp_path, ident):
    key_path, pub_path = keystore.save_identity(ident, tmp_path / "k")
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "k").st_mode & 0o777 == 0o700
    loaded = keystore.load_identity(key_path)
    assert loaded.public == ident.public
    assert keystore.load_public(pub_path) == ident.public
    # the loaded private key really is the same key: it signs what the old public key verifies
    env = envelope.sign(loaded, "oncofed/test/v1", b"x")
    assert envelope.verify(env, tag="oncofed/test/v1", signer=ident.public) == b"x"


def test_encrypted_key_file_needs_the_right_passphrase(tmp_path, ident):
    key_path, _ = keystore.save_identity(ident, tmp_path, PASS, **FAST)
    doc = json.loads(key_path.read_text())
    assert doc["protection"] == "argon2id-secretbox"
    seed, _box = ident._secret_material()
    assert base64.b64encode(seed).decode() not in key_path.read_text()
    assert keystore.is_encrypted(key_path)
    assert keystore.load_identity(key_path, PASS).public == ident.public
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        keystore.load_identity(key_path, b"not it")
    with pytest.raises(KeyFileError, match="passphrase-protected"):
        keystore.load_identity(key_path)


def test_default_cost_is_libsodium_interactive(ident):
    doc = json.loads(keystore.encode_private(ident, PASS))
    assert doc["kdf"]["opslimit"] == nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    assert doc["kdf"]["memlimit"] == nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_readable_by_others_is_refused_with_the_fix(tmp_path, ident, mode):
    key_path, _ = keystore.save_identity(ident, tmp_path)
    os.chmod(key_path, mode)
    with pytest.raises(SecretFileError, match="chmod 600"):
        keystore.load_identity(key_path)


def test_editing_the_header_to_claim_another_member_is_refused(tmp_path, ident):
    for passphrase in (None, PASS):
        d = tmp_path / ("enc" if passphrase else "plain")
        key_path, _ = keystore.save_identity(ident, d, passphrase, **FAST)
        doc = json.loads(key_path.read_text())
        doc["member_id"] = "centre-b"
        key_path.write_text(json.dumps(doc))
        with pytest.raises(KeyFileError, match="does not match"):
            keystore.load_identity(key_path, passphrase)


def test_flipped_ciphertext_byte_is_refused(tmp_path, ident):
    key_path, _ = keystore.save_identity(ident, tmp_path, PASS, **FAST)
    doc = json.loads(key_path.read_text())
    raw = bytearray(base64.b64decode(doc["secret"]))
    raw[-1] ^= 1
    doc["secret"] = base64.b64encode(bytes(raw)).decode()
    key_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError):
        keystore.load_identity(key_path, PASS)


def test_absurd_kdf_cost_in_a_file_is_refused_before_hashing(tmp_path, ident):
    key_path, _ = keystore.save_identity(ident, tmp_path, PASS, **FAST)
    doc = json.loads(key_path.read_text())
    doc["kdf"]["memlimit"] = 1 << 40
    key_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="cost out of range"):
        keystore.load_identity(key_path, PASS)


def test_never_overwrites_a_key(tmp_path, ident):
    keystore.save_identity(ident, tmp_path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keystore.save_identity(Identity.generate("centre", "centre-a"), tmp_path)


def test_public_file_with_wrong_fingerprint_is_refused(tmp_path, ident):
    _, pub_path = keystore.save_identity(ident, tmp_path)
    doc = json.loads(pub_path.read_text())
    doc["x25519"] = base64.b64encode(bytes(32)).decode()
    pub_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="fingerprints"):
        keystore.load_public(pub_path)


def test_garbage_files_are_clear_errors(tmp_path):
    bad = tmp_path / "identity.key"
    bad.write_text("not json")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="not a valid"):
        keystore.load_identity(bad)
    with pytest.raises(KeyFileError, match="does not exist"):
        keystore.load_public(tmp_path / "missing.pub")


def test_private_halves_never_show_in_repr(ident):
    seed, box = ident._secret_material()
    text = repr(ident)
    assert "private keys" in text
    assert seed.hex() not in text
    assert box.hex() not in text


@pytest.mark.parametrize(("role", "member_id"), [("admin", "x1"), ("centre", "Centre-A"),
                                                 ("centre", "a"), ("hub", "-hub")])
def test_unknown_roles_and_odd_ids_are_refused(role, member_id):
    with pytest.raises(ValueError, match=r"role must be|member id"):
        Identity.generate(role, member_id)


def test_public_identity_checks_key_lengths():
    with pytest.raises(ValueError, match="32 bytes"):
        PublicIdentity("centre", "centre-a", b"\x01" * 31, b"\x02" * 32)
