"""Symmetric node secrets (pseudonymisation, perturbation and ledger keys) as files at rest.

A secret file holds 32 random bytes, is created 0600 inside a 0700 folder, and is refused when
anyone but its owner could read it: a key that others can read must be treated as leaked.
"""

from __future__ import annotations

import os
import secrets as _random
import stat
from pathlib import Path

from oncofed.errors import OncofedError

SECRET_BYTES = 32


class SecretFileError(OncofedError):
    """A secret file is missing, malformed or readable by others."""


def create_secret_file(path: Path) -> None:
    """Write a fresh random secret to `path`; never overwrites an existing key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _random.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)


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
