"""Identity key files at rest: the private file (0600, optionally passphrase-encrypted) and the
public file a member hands out.

Private file (`identity.key`), JSON so an admin can see what it is without the passphrase:

    {"format": "oncofed-identity-key/v1", "role": "centre", "member_id": "centre-a",
     "ed25519_public": <b64>, "x25519_public": <b64>,
     "protection": "none" | "argon2id-secretbox",
     "kdf": {"opslimit": int, "memlimit": int, "salt": <b64, 16 bytes>},   # when encrypted
     "secret": <b64>}

`secret` is the 32-byte Ed25519 seed ‖ the 32-byte X25519 secret ‖ "role:member_id" — in the
clear, or as a SecretBox (XSalsa20-Poly1305) box under a key derived by argon2id from the
passphrase. Putting role and id inside the box means nobody can edit the header to make a key
claim another member; on load the public keys derived from the secret must equal the header's.

Public file (`identity.pub`): {"format": "oncofed-public-identity/v1", "role", "member_id",
"ed25519": <b64>, "x25519": <b64>, "ed25519_sha256", "x25519_sha256"}.

A private file that group or others may access is refused (`check_private_mode`): such a key must
be treated as leaked, and failing loudly is the only way an admin finds out.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.exceptions import CryptoError

from oncofed.keys.errors import KeyFileError
from oncofed.keys.identity import KEY_BYTES, Identity, PublicIdentity
from oncofed.keys.secrets import check_private_mode, write_private_file

PRIVATE_FORMAT = "oncofed-identity-key/v1"
PUBLIC_FORMAT = "oncofed-public-identity/v1"
PRIVATE_NAME = "identity.key"
PUBLIC_NAME = "identity.pub"

_ARGON = nacl.pwhash.argon2id
#: Defaults for new files: libsodium's "interactive" argon2id cost (≈ 0.1 s, 64 MiB here).
OPSLIMIT = _ARGON.OPSLIMIT_INTERACTIVE
MEMLIMIT = _ARGON.MEMLIMIT_INTERACTIVE
#: Cheapest allowed cost. Only tests should ask for it, and must do so explicitly.
OPSLIMIT_FAST_FOR_TESTS = _ARGON.OPSLIMIT_MIN
MEMLIMIT_FAST_FOR_TESTS = _ARGON.MEMLIMIT_MIN


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str, path: Path) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: {what} is not valid base64") from None


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return _ARGON.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                      opslimit=opslimit, memlimit=memlimit)


def encode_private(identity: Identity, passphrase: bytes | None = None, *,
                   opslimit: int = OPSLIMIT, memlimit: int = MEMLIMIT) -> bytes:
    """The private key file's bytes; encrypted under `passphrase` when one is given."""
    seed, box = identity._secret_material()
    plain = seed + box + f"{identity.role}:{identity.member_id}".encode()
    doc: dict[str, Any] = {
        "format": PRIVATE_FORMAT, "role": identity.role, "member_id": identity.member_id,
        "ed25519_public": _b64(identity.public.ed25519),
        "x25519_public": _b64(identity.public.x25519),
    }
    if passphrase is None:
        doc |= {"protection": "none", "secret": _b64(plain)}
    else:
        if not passphrase:
            raise KeyFileError("an empty passphrase protects nothing; omit it instead")
        _check_cost(opslimit, memlimit, Path("<new key>"))
        salt = nacl.utils.random(_ARGON.SALTBYTES)
        key = _derive(passphrase, salt, opslimit, memlimit)
        boxed = bytes(nacl.secret.SecretBox(key).encrypt(plain))
        doc |= {"protection": "argon2id-secretbox",
                "kdf": {"opslimit": opslimit, "memlimit": memlimit, "salt": _b64(salt)},
                "secret": _b64(boxed)}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _open_box(kdf: Any, secret: bytes, passphrase: bytes, path: Path) -> bytes:
    """Open an argon2id + SecretBox box (identity key files and passphrase boxes alike): the
    cost is bounded before deriving, and a wrong passphrase or altered box is one error."""
    ops, mem = int(kdf["opslimit"]), int(kdf["memlimit"])
    _check_cost(ops, mem, path)
    salt = _unb64(kdf["salt"], "salt", path)
    if len(salt) != _ARGON.SALTBYTES:
        raise KeyFileError(f"{path}: salt must be {_ARGON.SALTBYTES} bytes")
    try:
        return bytes(nacl.secret.SecretBox(_derive(passphrase, salt, ops, mem)).decrypt(secret))
    except CryptoError:
        raise KeyFileError(f"{path}: wrong passphrase, or the file was altered") from None


def _check_cost(opslimit: int, memlimit: int, path: Path) -> None:
    """Bound the argon2id cost: below the minimum is weak, above 'sensitive' is a memory bomb."""
    if not (_ARGON.OPSLIMIT_MIN <= opslimit <= _ARGON.OPSLIMIT_SENSITIVE
            and _ARGON.MEMLIMIT_MIN <= memlimit <= _ARGON.MEMLIMIT_SENSITIVE):
        raise KeyFileError(f"{path}: argon2id cost out of range (opslimit {opslimit}, "
                           f"memlimit {memlimit})")


def decode_private(data: bytes, passphrase: bytes | None, path: Path) -> Identity:
    """Parse a private key file's bytes (see the module docstring) into an Identity."""
    try:
        doc = json.loads(data)
        if doc.get("format") != PRIVATE_FORMAT:
            raise KeyFileError(f"{path} is not an oncofed identity key ({PRIVATE_FORMAT})")
        role, member_id, protection = doc["role"], doc["member_id"], doc["protection"]
        secret = _unb64(doc["secret"], "secret", path)
        if protection == "none":
            plain = secret
        elif protection == "argon2id-secretbox":
            if passphrase is None:
                raise KeyFileError(f"{path} is passphrase-protected; give its passphrase")
            plain = _open_box(doc["kdf"], secret, passphrase, path)
        else:
            raise KeyFileError(f"{path}: unknown protection {protection!r}")
        label = f"{role}:{member_id}".encode()
        if len(plain) != 2 * KEY_BYTES + len(label) or plain[2 * KEY_BYTES:] != label:
            raise KeyFileError(f"{path}: role or member id does not match the protected key")
        identity = Identity(role, member_id, plain[:KEY_BYTES], plain[KEY_BYTES:2 * KEY_BYTES])
        if (_unb64(doc["ed25519_public"], "ed25519_public", path) != identity.public.ed25519
                or _unb64(doc["x25519_public"], "x25519_public", path) != identity.public.x25519):
            raise KeyFileError(f"{path}: public keys do not match the private keys")
        return identity
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise KeyFileError(f"{path} is not a valid oncofed identity key: {exc}") from None


def save_identity(identity: Identity, directory: Path, passphrase: bytes | None = None, *,
                  opslimit: int = OPSLIMIT, memlimit: int = MEMLIMIT) -> tuple[Path, Path]:
    """Write identity.key (0600) and identity.pub into `directory`; return both paths.

    `opslimit`/`memlimit` exist so tests can pass the FAST_FOR_TESTS constants; production
    callers leave them alone.
    """
    key_path, pub_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if pub_path.exists():
        raise KeyFileError(f"{pub_path} already exists; refusing to overwrite a key")
    write_private_file(key_path, encode_private(identity, passphrase,
                                                opslimit=opslimit, memlimit=memlimit))
    save_public(identity.public, pub_path)
    return key_path, pub_path


def load_identity(path: Path, passphrase: bytes | None = None) -> Identity:
    """Load a private key file, refusing it when others can access it. `path` may be the folder."""
    if path.is_dir():
        path = path / PRIVATE_NAME
    check_private_mode(path)
    return decode_private(path.read_bytes(), passphrase, path)


def is_encrypted(path: Path) -> bool:
    """Whether a private key file needs a passphrase (so the CLI knows whether to ask)."""
    if path.is_dir():
        path = path / PRIVATE_NAME
    try:
        return json.loads(path.read_bytes()).get("protection") != "none"
    except (OSError, ValueError, AttributeError):
        return False


def encode_public(public: PublicIdentity) -> bytes:
    doc = {"format": PUBLIC_FORMAT, "role": public.role, "member_id": public.member_id,
           "ed25519": _b64(public.ed25519), "x25519": _b64(public.x25519),
           "ed25519_sha256": public.signing_fingerprint, "x25519_sha256": public.box_fingerprint}
    return (json.dumps(doc, indent=2) + "\n").encode()


def save_public(public: PublicIdentity, path: Path) -> None:
    """Write a public identity file (0644: it is meant to be handed out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_public(public))


def load_public(path: Path) -> PublicIdentity:
    """Read a public identity file, checking its stated fingerprints against its keys."""
    if path.is_dir():
        path = path / PUBLIC_NAME
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("format") != PUBLIC_FORMAT:
            raise KeyFileError(f"{path} is not an oncofed public identity ({PUBLIC_FORMAT})")
        public = PublicIdentity(role=doc["role"], member_id=doc["member_id"],
                                ed25519=_unb64(doc["ed25519"], "ed25519", path),
                                x25519=_unb64(doc["x25519"], "x25519", path))
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise KeyFileError(f"{path} is not a valid oncofed public identity: {exc}") from None
    if (doc.get("ed25519_sha256") != public.signing_fingerprint
            or doc.get("x25519_sha256") != public.box_fingerprint):
        raise KeyFileError(f"{path}: stated fingerprints do not match its keys")
    return public


BOX_FORMAT = "oncofed-passphrase-box/v1"


def passphrase_box(plain: bytes, passphrase: bytes, *, label: str,
                   opslimit: int = OPSLIMIT, memlimit: int = MEMLIMIT) -> bytes:
    """Encrypt `plain` under an argon2id-derived key (memory-hard, unlike PKCS#8's PBKDF2 with
    2048 rounds). `label` says what the secret is and is bound inside the box, so a box made for
    one purpose cannot be presented as another."""
    if not passphrase:
        raise KeyFileError("an empty passphrase protects nothing")
    _check_cost(opslimit, memlimit, Path(f"<{label}>"))
    salt = nacl.utils.random(_ARGON.SALTBYTES)
    tag = label.encode()
    boxed = bytes(nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit)).encrypt(
        len(tag).to_bytes(2, "big") + tag + plain))
    doc = {"format": BOX_FORMAT, "label": label,
           "kdf": {"opslimit": opslimit, "memlimit": memlimit, "salt": _b64(salt)},
           "secret": _b64(boxed)}
    return (json.dumps(doc, indent=2) + "\n").encode()


def passphrase_unbox(data: bytes, passphrase: bytes, *, label: str, path: Path) -> bytes:
    """Open a `passphrase_box`; a wrong passphrase, an altered file or another label fails."""
    try:
        doc = json.loads(data)
        if doc.get("format") != BOX_FORMAT or doc.get("label") != label:
            raise KeyFileError(f"{path} is not an oncofed {label} file")
        kdf, secret = doc["kdf"], _unb64(doc["secret"], "secret", path)
        plain = _open_box(kdf, secret, passphrase, path)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as exc:
        raise KeyFileError(f"{path} is not a valid oncofed {label} file: {exc}") from None
    tag = label.encode()
    if plain[:2] != len(tag).to_bytes(2, "big") or plain[2:2 + len(tag)] != tag:
        raise KeyFileError(f"{path}: the protected secret is not a {label}")
    return plain[2 + len(tag):]
