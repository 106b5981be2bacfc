"""Symmetric node secrets (pseudonymisation, perturbation and ledger keys) as files at rest.

A secret file holds 32 random bytes, is created 0600 inside a 0700 folder, and is refused when
anyone but its owner could read it: a key that others can read must be treated as leaked.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
from pathlib import Path

from oncofed.keys.errors import KeyFileError, SecretFileError

SECRET_BYTES = 32



def write_private_file(path: Path, data: bytes) -> None:
    """Create `path` 0600 from the start (never chmod after writing), in a folder created 0700
    if missing, and never overwrite: replacing a key silently is how keys get lost."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_secret_file(path: Path) -> None:
    """Write a fresh random secret to `path`; never overwrites an existing key."""
    write_private_file(path, _random.token_bytes(SECRET_BYTES))


def check_private_mode(path: Path) -> None:
    """Refuse a key file that group or others may read or write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretFileError(f"key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"key file {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def load_secret_file(path: Path) -> bytes:
    """Read a secret created by `create_secret_file`, checking its mode and length."""
    check_private_mode(path)
    data = path.read_bytes()
    if len(data) != SECRET_BYTES:
        raise SecretFileError(f"key file {path} is not a {SECRET_BYTES}-byte oncofed secret")
    return data
