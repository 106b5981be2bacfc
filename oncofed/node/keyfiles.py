"""Optional node.toml sections for the node's own keys, read from `NodeConfig.extra` so they can
be added to an existing node directory without re-running `node init`:

    [identity]
    # The centre's Ed25519/X25519 identity key (`oncofed keys new`), used to sign audit-log
    # checkpoints (and later accepts and answers). Relative paths are from the node directory.
    # When absent, audit checkpoints are not signed and `node audit verify` says so.
    key = "keys/identity.key"

    [tls]
    # The node's federation TLS certificate, its key and the federation root certificate. When
    # all three are set, the admin API listens on `[admin] listen` with mutual TLS; otherwise it
    # listens on the Unix socket `admin.sock` in the node directory.
    cert = "keys/tls-centre-centre-a.cert.pem"
    key = "keys/tls-centre-centre-a.key.pem"
    root = "keys/root.pem"

    [audit]
    # Sign a checkpoint after every N audit entries (when an identity key is set).
    checkpoint_every = 100

An encrypted identity key takes its passphrase from the environment variable
ONCOFED_NODE_KEY_PASSPHRASE: a node runs unattended, and a passphrase in node.toml would sit next
to the key it protects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from oncofed.errors import NodeError
from oncofed.keys.identity import Identity
from oncofed.keys.keystore import is_encrypted, load_identity
from oncofed.node.config import NodeConfig

IDENTITY_PASSPHRASE_ENV = "ONCOFED_NODE_KEY_PASSPHRASE"  # noqa: S105 - a variable's name, not a secret
DEFAULT_CHECKPOINT_EVERY = 100
ADMIN_SOCKET_NAME = "admin.sock"


def _section(cfg: NodeConfig, name: str) -> dict[str, Any]:
    value = cfg.extra.get(name, {})
    if not isinstance(value, dict):
        raise NodeError(f"node.toml: [{name}] must be a table")
    return value


def _path(root: Path, section: str, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise NodeError(f"node.toml: [{section}] {key} must be a non-empty path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def identity_key_path(cfg: NodeConfig, root: Path) -> Path | None:
    """Where the node's identity key is, or None when node.toml names none."""
    value = _section(cfg, "identity").get("key")
    return None if value in (None, "") else _path(root, "identity", "key", value)


def load_node_identity(cfg: NodeConfig, root: Path) -> Identity | None:
    """The node's identity, checked to be this centre's: a key of another member would sign
    checkpoints nobody could attribute to this node."""
    path = identity_key_path(cfg, root)
    if path is None:
        return None
    if not path.exists():
        raise NodeError(f"node.toml: [identity] key {path} does not exist")
    passphrase = None
    if is_encrypted(path):
        secret = os.environ.get(IDENTITY_PASSPHRASE_ENV)
        if not secret:
            raise NodeError(f"{path} is passphrase-protected: set {IDENTITY_PASSPHRASE_ENV}")
        passphrase = secret.encode()
    identity = load_identity(path, passphrase)
    if identity.role != "centre" or identity.member_id != cfg.node_id:
        raise NodeError(f"{path} is the key of {identity.role} {identity.member_id!r}, not of "
                        f"centre {cfg.node_id!r}")
    return identity


def tls_paths(cfg: NodeConfig, root: Path) -> tuple[Path, Path, Path] | None:
    """(certificate, key, root certificate) when node.toml's [tls] names all three, else None."""
    section = _section(cfg, "tls")
    names = ("cert", "key", "root")
    given = [n for n in names if section.get(n)]
    if not given:
        return None
    if len(given) != len(names):
        missing = ", ".join(n for n in names if n not in given)
        raise NodeError(f"node.toml: [tls] needs cert, key and root; missing {missing}")
    cert, key, root_cert = (_path(root, "tls", n, section[n]) for n in names)
    return cert, key, root_cert


def checkpoint_every(cfg: NodeConfig) -> int:
    """How many audit entries go between two automatic checkpoints."""
    value = _section(cfg, "audit").get("checkpoint_every", DEFAULT_CHECKPOINT_EVERY)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
        raise NodeError("node.toml: [audit] checkpoint_every must be an integer from 1 to 1000000")
    return value


def hub_settings(cfg: NodeConfig) -> dict[str, Any] | None:
    """node.toml's [hub] table — where this centre's connector dials out to — or None:

        [hub]
        address = "hub.example.org:7443"   # the hub's host:port (outbound only; no inbound port here)
        server_name = ""                    # the name in the hub's certificate, when not the host
        min_participants = 3                # this centre answers only in participant sets this large
    """
    section = _section(cfg, "hub")
    if not section:
        return None
    extra = sorted(set(section) - {"address", "server_name", "min_participants"})
    if extra:
        raise NodeError(f"node.toml: unknown setting(s) in [hub]: {', '.join(extra)}")
    address = section.get("address")
    if not isinstance(address, str) or ":" not in address:
        raise NodeError("node.toml: [hub] address must be host:port")
    server_name = section.get("server_name", "")
    minimum = section.get("min_participants", 3)
    if not isinstance(server_name, str):
        raise NodeError("node.toml: [hub] server_name must be text")
    if not isinstance(minimum, int) or isinstance(minimum, bool) or not 2 <= minimum <= 1000:
        raise NodeError("node.toml: [hub] min_participants must be an integer from 2 to 1000")
    return {"address": address, "server_name": server_name or None, "min_participants": minimum}
