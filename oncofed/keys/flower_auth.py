"""Key material for Flower's deployment engine: a SuperNode's authentication key pair, and the
SuperLink's TLS key as the file Flower insists on reading.

Why these live here: only `oncofed.keys` may touch `cryptography`, and Flower's formats are
narrow. Pinned against flwr 1.42 (read from the wheel, run here):
- `flower-supernode --auth-supernode-private-key` reads the file with
  `load_ssh_private_key(data, None)`: OpenSSH format, an elliptic-curve key, **no passphrase**
  (exit 302 otherwise). `flwr supernode register KEY.pub` reads `load_ssh_public_key` and takes only
  NIST curves (exit 500 otherwise). We make P-384, Flower's documented choice.
- The SuperLink's HTTPS server (uvicorn) is given `--ssl-keyfile` without a password: an encrypted
  hub key cannot be used as it is, so `superlink_tls_key` writes a cleartext copy (0600) next to
  the SuperLink's state for the time it runs, and says so in its name.

A SuperNode key authenticates a centre's SuperNode to the hub's SuperLink; it is not the centre's
federation identity (Ed25519/X25519 in the registry) and grants nothing on the query plane.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from oncofed.keys.errors import KeyFileError
from oncofed.keys.secrets import check_private_mode, write_private_file
from oncofed.keys.tls import load_tls_key

SUPERNODE_KEY = "supernode-auth.key"
SUPERNODE_PUB = "supernode-auth.pub"
CLEARTEXT_TLS_KEY = "superlink-tls.cleartext.key.pem"
_NIST = frozenset({"secp256r1", "secp384r1", "secp521r1"})


@dataclass(frozen=True)
class SupernodeKey:
    """Where a SuperNode's key pair lives, and the public key's fingerprint (OpenSSH's
    `SHA256:…` form) so that admins can compare what they sent with what the hub registered."""

    private_path: Path
    public_path: Path
    fingerprint: str


def _fingerprint(public_line: bytes) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def new_supernode_key(directory: Path, comment: str = "oncofed-supernode") -> SupernodeKey:
    """Make a SuperNode's ECDSA P-384 key pair in OpenSSH format in `directory`: the private key
    0600 (unencrypted, since Flower cannot take a passphrase), the public key to send to the hub
    operator. Refuses to overwrite: a replaced key silently unregisters the SuperNode."""
    directory = Path(directory)
    private_path, public_path = directory / SUPERNODE_KEY, directory / SUPERNODE_PUB
    if public_path.exists():
        raise KeyFileError(f"{public_path} already exists; refusing to overwrite a key")
    key = ec.generate_private_key(ec.SECP384R1())
    write_private_file(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public_path.write_bytes(line + b" " + comment.encode("ascii", "replace") + b"\n")
    return SupernodeKey(private_path, public_path, _fingerprint(line))


def load_supernode_key(directory: Path) -> SupernodeKey:
    """Check the key pair in `directory` before a SuperNode is started with it: private key 0600,
    parseable the way Flower parses it, and the public file its own half (else the hub registered
    a key this node cannot prove)."""
    private_path, public_path = Path(directory) / SUPERNODE_KEY, Path(directory) / SUPERNODE_PUB
    check_private_mode(private_path)
    try:
        key = serialization.load_ssh_private_key(private_path.read_bytes(), None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{private_path}: not an unencrypted OpenSSH private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _NIST:
        raise KeyFileError(f"{private_path}: a SuperNode key must be ECDSA on a NIST curve")
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    if supernode_public_key(public_path) != _fingerprint(line):
        raise KeyFileError(f"{public_path} is not the public half of {private_path}")
    return SupernodeKey(private_path, public_path, _fingerprint(line))


def supernode_public_key(path: Path) -> str:
    """Check that `path` holds a public key `flwr supernode register` accepts (OpenSSH ECDSA on
    a NIST curve) and return its fingerprint; a clear error instead of Flower's exit 500."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not an OpenSSH public key (make one with `oncofed node flower key`)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _NIST:
        raise KeyFileError(f"{path}: a SuperNode key must be ECDSA on a NIST curve")
    return _fingerprint(data.strip())


def superlink_tls_key(tls_key: Path, runtime_dir: Path, passphrase: bytes | None = None) -> Path:
    """The TLS key file to hand the SuperLink. An unencrypted key (0600) is used where it is; an
    encrypted one is written in clear, 0600, to `runtime_dir/superlink-tls.cleartext.key.pem`
    for as long as the SuperLink runs (`remove_superlink_tls_key` at shutdown), because Flower's
    HTTPS server takes no key password."""
    cleartext = load_tls_key(Path(tls_key), passphrase)      # checks 0600 and that it is ECDSA
    if passphrase is None:
        return Path(tls_key)
    out = Path(runtime_dir) / CLEARTEXT_TLS_KEY
    out.unlink(missing_ok=True)
    write_private_file(out, cleartext)
    return out


def remove_superlink_tls_key(runtime_dir: Path) -> None:
    """Delete the cleartext copy `superlink_tls_key` may have written (no error when absent)."""
    (Path(runtime_dir) / CLEARTEXT_TLS_KEY).unlink(missing_ok=True)
